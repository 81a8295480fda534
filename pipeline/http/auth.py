"""Authorization headers. Secrets are unwrapped only here, at the moment a header is built."""

from __future__ import annotations

import base64
import random
import threading
import time
from typing import TYPE_CHECKING

from pydantic import SecretStr

from pipeline.errors import TerminalError, TransientError
from pipeline.http.retry import is_slow_down, parse_retry_after

if TYPE_CHECKING:
    import requests


def basic_key_pair(public_key: SecretStr, secret_key: SecretStr) -> dict[str, str]:
    token = base64.b64encode(f"{public_key.get_secret_value()}:{secret_key.get_secret_value()}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def raw_api_key(api_key: SecretStr) -> dict[str, str]:
    return {"Authorization": api_key.get_secret_value()}


def bearer(token: SecretStr | str) -> dict[str, str]:
    value = token.get_secret_value() if isinstance(token, SecretStr) else token
    return {"Authorization": f"Bearer {value}"}


_TOKEN_ATTEMPTS = 4


class OAuthClientCredentials:
    """OAuth 2.0 client credentials with a cached token, refreshed shortly before it expires.

    One instance per run, shared by all workers: the token is fetched once per lifetime, not per request. The
    client's id and secret go in a Basic header (`in_form=False`, the Data Deletion API) or in the form (the
    Partnerships API). The token and the secret are never logged and never leave this object except in a request.
    `names` says which job keys hold them, for the message when they are refused.
    """

    def __init__(self, token_url: str, app_id: SecretStr, app_secret: SecretStr, *, timeout: float = 30.0,
                 refresh_margin: float = 300.0, in_form: bool = False, names: str = "app_id and app_secret",
                 clock=time.monotonic, sleep=time.sleep, session: requests.Session | None = None):
        self._token_url = token_url
        self._app_id = app_id
        self._app_secret = app_secret
        self._in_form = in_form
        self._names = names
        self._timeout = timeout
        self._margin = refresh_margin
        self._clock = clock
        self._sleep = sleep
        self._session = session  # made at the first fetch: a dry run loads no HTTP stack
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.fetches = 0

    def headers(self) -> dict[str, str]:
        return bearer(self.token())

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                asked_at = self._clock()  # the token's lifetime runs from before the request, to be safe
                self._token, lifetime = self._fetch()
                # Refresh a margin before expiry, but never sooner than halfway through a short-lived token.
                self._refresh_at = asked_at + max(lifetime - self._margin, lifetime / 2)
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _fetch(self) -> tuple[str, float]:
        import requests

        self._session = self._session or requests.Session()
        self.fetches += 1
        last_problem = "no answer"
        for attempt in range(1, _TOKEN_ATTEMPTS + 1):
            try:
                response = self._session.post(self._token_url, **self._request(), timeout=(10.0, self._timeout))
            except requests.RequestException as exc:
                last_problem = type(exc).__name__
            else:
                if response.status_code in (400, 401, 403):
                    raise TerminalError(
                        f"the OAuth token request was refused (HTTP {response.status_code}): check "
                        f"destination.credentials {self._names}", http_status=response.status_code, stops_run=True,
                    )
                if response.ok:
                    try:
                        # Keys read whatever their case: Rokt's own auth page shows "Access_token" in one sample.
                        body = {str(key).lower(): value for key, value in response.json().items()}
                        return str(body["access_token"]), float(body.get("expires_in", 3600))
                    except (ValueError, KeyError, TypeError, AttributeError):
                        last_problem = "an answer without access_token"
                else:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
                    if retry_after is not None:
                        # The request's own retry waits for it: with the run's other starts held, woken by a stop,
                        # and within retry.max_retry_after_seconds (not here, under the token lock).
                        raise TransientError(f"the OAuth token endpoint is busy (HTTP {response.status_code})",
                                             http_status=response.status_code, retry_after=retry_after,
                                             may_have_arrived=False,
                                             throttled=is_slow_down(response.status_code, retry_after))
                    last_problem = f"HTTP {response.status_code}"
            if attempt < _TOKEN_ATTEMPTS:
                self._sleep(min(4.0, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
        # Nothing of the request this token was for has been sent: a retry of it can never duplicate anything.
        raise TransientError(f"could not get an OAuth token: {last_problem}", may_have_arrived=False)

    def _request(self) -> dict[str, dict[str, str]]:
        form = {"grant_type": "client_credentials"}
        if self._in_form:
            form |= {"client_id": self._app_id.get_secret_value(), "client_secret": self._app_secret.get_secret_value()}
            return {"headers": {"Accept": "application/json"}, "data": form}
        return {"headers": {**basic_key_pair(self._app_id, self._app_secret), "Accept": "application/json"}, "data": form}
