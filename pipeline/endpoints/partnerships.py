"""What the two Partnerships families share [contract sections 4, 5 and "Published by Rokt since the seeds"].

Bearer authentication with a fixed token, or with access tokens exchanged from a client id and secret (a few
minutes each: refreshed before they expire, and once more on a 401); and the status table, where a 401 with
exchanged tokens means "refresh and try once more" rather than "wrong credentials".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.config import ClientCredentials, PartnershipsDestination
from pipeline.endpoints.base import EndpointSpec, raise_for_status
from pipeline.errors import CredentialsExpired
from pipeline.http.auth import OAuthClientCredentials, bearer

if TYPE_CHECKING:
    import requests

# Refresh an access token this long before it expires (published lifetime: about five minutes); a token shorter
# than twice this is refreshed halfway through its life.
_TOKEN_REFRESH_MARGIN_SECONDS = 60.0


class PartnershipsAuth:
    def __init__(self, destination: PartnershipsDestination):
        credentials = destination.credentials
        self.oauth: OAuthClientCredentials | None = None
        self._fixed: dict[str, str] = {}
        if isinstance(credentials, ClientCredentials):
            self.oauth = OAuthClientCredentials(
                destination.token_url, credentials.client_id, credentials.client_secret, timeout=destination.timeout_seconds,
                refresh_margin=_TOKEN_REFRESH_MARGIN_SECONDS, in_form=True, names="client_id and client_secret")
        else:
            self._fixed = bearer(credentials.token)

    def headers(self) -> dict[str, str]:
        return self.oauth.headers() if self.oauth is not None else self._fixed

    def refresh(self) -> bool:
        """After a 401: drop the access token, so the retry exchanges a fresh one. A fixed token cannot be refreshed."""
        if self.oauth is None:
            return False
        self.oauth.invalidate()
        return True

    def raise_for_status(self, response: requests.Response, spec: EndpointSpec) -> None:
        if response.status_code == 401 and self.oauth is not None:
            raise CredentialsExpired(f"HTTP 401 from {spec.family}: the access token was refused", http_status=401)
        raise_for_status(response, spec)
