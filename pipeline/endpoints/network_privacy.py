"""Partnerships API network privacy requests [contract section 4]: one subject per request.

NETWORK_OPT_OUT takes exactly one of email or phone; NETWORK_DATA_DELETION exactly one of email or
sha256Email (base64 digest). A deletion already implies suppression, so an opt-out for a subject that is
also being deleted in the same run is dropped (superseded). There is no Idempotency-Key: a lost answer is
retried after backoff and flagged ambiguous. The whole file is prepared before the first request (the supersede
needs it anyway), so a run knows from its start how long it will take at the published 10 requests a minute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from pipeline.batching import SUBJECT, WIRE, Batch
from pipeline.config import NetworkPrivacyDestination
from pipeline.endpoints.base import EndpointBase, EndpointSpec, HttpRequest, json_body
from pipeline.endpoints.partnerships import PartnershipsAuth
from pipeline.prepare.hashing import hex_to_base64, prehashed_to_hex, sha256_hex
from pipeline.prepare.normalise import normalise_phone
from pipeline.prepare.prepared import RowPlan
from pipeline.prepare.schemas import row_rule

if TYPE_CHECKING:
    import requests

PATH = "/v1/partnership/network-privacy-requests"
OPT_OUT, DELETION = "NETWORK_OPT_OUT", "NETWORK_DATA_DELETION"
REQUEST_ID_HEADER = "X-Network-Privacy-Request-Id"
_WIRE_KEYS = {"email": "email", "phone": "phone", "sha256": "sha256Email"}
_HINTS = {
    400: "the API rejected the request (identifier rules or format)",
    401: "check destination.credentials (client_id and client_secret, or token)",
    403: "the credentials are not allowed to act for this parent account",
}


class NetworkPrivacy(EndpointBase):
    one_subject = True

    def __init__(self, destination: NetworkPrivacyDestination, columns: dict[str, str]):
        self.destination = destination
        self.spec = EndpointSpec(
            family="network_privacy",
            retry_safe=False,
            wire_encoding="hex",
            identifier_role="subject",
            limits=destination.effective_limits,
            one_subject=self.one_subject,
            needs_whole_set=True,
            status_hints=_HINTS,
        )
        self._url = destination.url + PATH
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self._auth = PartnershipsAuth(destination)
        self._columns = columns

    def auth_headers(self) -> dict[str, str]:
        return self._auth.headers()

    def refresh_credentials(self) -> bool:
        return self._auth.refresh()

    def check_status(self, response: requests.Response) -> None:
        self._auth.raise_for_status(response, self.spec)

    def row_plan(self, columns: dict[str, str]) -> RowPlan:
        identifiers = [role for role in ("email", "phone", "sha256") if role in columns]

        def present(role: str) -> pl.Expr:
            return pl.col(role).is_not_null() if role in identifiers else pl.lit(False)

        request_type = pl.col("request_type")
        opt_out, deletion = request_type == OPT_OUT, request_type == DELETION
        rules = [
            row_rule(request_type.is_not_null(), "missing request type"),
            row_rule(pl.any_horizontal([present(r) for r in identifiers]), "empty: no email, phone or sha256 on this row"),
            row_rule(~(opt_out & present("sha256")), "NETWORK_OPT_OUT does not take a hashed email (sha256Email)"),
            row_rule(~(opt_out & present("email") & present("phone")), "NETWORK_OPT_OUT takes exactly one of email or phone, not both"),
            row_rule(~(deletion & present("phone")), "NETWORK_DATA_DELETION does not take a phone"),
            row_rule(~(deletion & present("email") & present("sha256")), "NETWORK_DATA_DELETION takes exactly one of email or sha256Email, not both"),
        ]
        kind = value = subject = None
        for role in reversed(identifiers):  # email wins the when-chain when several could apply
            role_value = hex_to_base64(prehashed_to_hex(pl.col(role))) if role == "sha256" else pl.col(role)
            role_subject = prehashed_to_hex(pl.col(role)) if role == "sha256" else sha256_hex(pl.col(role))
            kind = pl.when(present(role)).then(pl.lit(_WIRE_KEYS[role])).otherwise(kind) if kind is not None else pl.lit(_WIRE_KEYS[role])
            value = pl.when(present(role)).then(role_value).otherwise(value) if value is not None else role_value
            subject = pl.when(present(role)).then(role_subject).otherwise(subject) if subject is not None else role_subject
        assert kind is not None and value is not None and subject is not None
        outputs = [
            pl.concat_str([request_type, pl.lit(":"), subject]).alias(WIRE),
            subject.alias(SUBJECT),
            request_type.alias("request_type"),
            kind.alias("identifier_kind"),
            value.alias("identifier"),
        ]
        fixed = self.destination.request_type
        return RowPlan(
            roles=["request_type", *identifiers],
            outputs=outputs,
            normalisers={"phone": lambda role: normalise_phone(role, self.destination.default_phone_region)},
            nullable=True,
            row_rules=rules,
            derived={} if "request_type" in columns else {"request_type": pl.lit(fixed, dtype=pl.String)},
            supersede=drop_superseded_opt_outs,
        )

    def build_request(self, batch: Batch) -> HttpRequest:
        attributes = batch.attributes or {}
        body = {"requestType": attributes["request_type"], attributes["identifier_kind"]: attributes["identifier"]}
        return HttpRequest("POST", self._url, self._headers, json=body, params={"parent_account_id": self.destination.parent_account_id})

    def read_response(self, response: requests.Response) -> dict[str, Any]:
        self.check_status(response)
        ids: dict[str, Any] = {}
        body = json_body(response)
        if isinstance(body, dict) and isinstance(body.get("requestId"), str):
            ids["requestId"] = body["requestId"]
        if response.headers.get(REQUEST_ID_HEADER):
            ids[REQUEST_ID_HEADER] = response.headers[REQUEST_ID_HEADER]
        return ids

    def manifest_fields(self, batch: Batch) -> dict[str, Any]:
        attributes = batch.attributes or {}
        return {"request_type": attributes.get("request_type"), "identifier_kind": attributes.get("identifier_kind")}

    def resume_key(self, batch: Batch) -> str:
        # An accepted opt-out does not stand in for a deletion of the same subject (the input may change
        # between a run and its resume, e.g. an export rewritten before an Airflow retry).
        return f"{(batch.attributes or {}).get('request_type')}:{batch.subject}"

    @staticmethod
    def resume_keys_covered(record: dict[str, Any]) -> tuple[str, ...]:
        covered = (DELETION, OPT_OUT) if record.get("request_type") == DELETION else (record.get("request_type"),)
        return tuple(f"{request_type}:{record['subject']}" for request_type in covered)


def drop_superseded_opt_outs(requests_frame: pl.LazyFrame) -> pl.LazyFrame:
    """An opt-out for a subject that is also being deleted is redundant: one deletion is enough."""
    deleted = requests_frame.filter(pl.col("request_type") == DELETION).select(SUBJECT).unique().with_columns(_deleted=pl.lit(True))
    return (
        requests_frame.join(deleted, on=SUBJECT, how="left", maintain_order="left")
        .filter(~((pl.col("request_type") == OPT_OUT) & pl.col("_deleted").fill_null(False)))
        .drop("_deleted")
    )
