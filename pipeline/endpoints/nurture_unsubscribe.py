"""Nurture Unsubscribe API [contract section 3]: one raw email per request; 201 {"id": ...}.

Not idempotent on the server side: retried freely only when the request surely never arrived; an answer
lost after sending is retried after backoff and flagged ambiguous in the manifest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.batching import Batch
from pipeline.config import NurtureUnsubscribeDestination
from pipeline.endpoints.base import EndpointBase, EndpointSpec, HttpRequest, json_body, raise_for_status
from pipeline.http.auth import raw_api_key

if TYPE_CHECKING:
    import requests

PATH = "/1.0/nurture/unsubscribe"
_HINTS = {
    400: "the API rejected the request's format",
    401: "check the webhook API key in destination.credentials.api_key",
    403: "the webhook API key is not allowed for this account",
}


class NurtureUnsubscribe(EndpointBase):
    one_subject = True

    def __init__(self, destination: NurtureUnsubscribeDestination, identifier_role: str):
        self.spec = EndpointSpec(
            family="nurture_unsubscribe",
            retry_safe=False,
            wire_encoding="email",
            identifier_role=identifier_role,
            limits=destination.effective_limits,
            one_subject=self.one_subject,
            status_hints=_HINTS,
        )
        self._url = destination.url + PATH
        self._headers = {
            **raw_api_key(destination.credentials.api_key),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def build_request(self, batch: Batch) -> HttpRequest:
        (email,) = batch.identifiers
        return HttpRequest("POST", self._url, self._headers, json={"email": email})

    def read_response(self, response: requests.Response) -> dict[str, Any]:
        raise_for_status(response, self.spec)
        body = json_body(response)
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            return {"id": body["id"]}
        return {}  # accepted (201) but the ID is unreadable; the manifest line says so
