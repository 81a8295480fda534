"""Send one request with retries, within the run's limits, and say exactly what happened."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

import requests
import urllib3.exceptions

from pipeline.endpoints.base import Endpoint, HttpRequest
from pipeline.errors import SendError, TerminalError, TransientError
from pipeline.http.limits import RequestGate
from pipeline.http.retry import RetryPolicy
from pipeline.http.session import CONNECT_TIMEOUT_SECONDS


@dataclass
class Delivery:
    status: Literal["accepted", "rejected", "failed"]
    http_status: int | None
    ids: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    error: str | None = None
    ambiguous: bool = False
    stops_run: bool = False


def network_error(exc: requests.RequestException) -> SendError:
    """Tell a request that never left (safe to resend) from one whose answer was lost (the server may have acted)."""
    name = type(exc).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        return TerminalError(f"TLS error talking to the API ({name}); check base_url and certificates", stops_run=True)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return TransientError(f"connect timeout ({name})", may_have_arrived=False)
    if isinstance(exc, requests.exceptions.ConnectionError) and _never_connected(exc):
        return TransientError(f"connection refused or unreachable ({name})", may_have_arrived=False)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return TransientError(f"no answer within the timeout ({name})", may_have_arrived=True)
    return TransientError(f"connection lost before the answer ({name})", may_have_arrived=True)


def _never_connected(exc: BaseException) -> bool:
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)):
            return True
        pending.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
    return False


class Sender:
    """Shared by every worker of a run: one session, one gate, one policy, one stop switch."""

    def __init__(self, session: requests.Session, gate: RequestGate, policy: RetryPolicy, timeout: float, endpoint: Endpoint):
        self.session = session
        self.gate = gate
        self.policy = policy
        self.timeout = timeout
        self.endpoint = endpoint
        self.stopped = threading.Event()
        self._sleep = self.stopped.wait  # a stop wakes sleepers at once

    def deliver(self, request: HttpRequest) -> Delivery:
        ambiguous = False
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.gate.slot():
                    response = self.session.request(
                        request.method,
                        request.url,
                        headers=request.headers,
                        json=request.json,
                        params=request.params,
                        timeout=(CONNECT_TIMEOUT_SECONDS, self.timeout),
                    )
                ids = self.endpoint.read_response(response)
                return Delivery("accepted", response.status_code, ids, attempt, ambiguous=ambiguous)
            except requests.RequestException as exc:
                error: SendError = network_error(exc)
            except SendError as exc:
                error = exc
            if isinstance(error, TerminalError):
                return Delivery("rejected", error.http_status, {}, attempt, str(error), ambiguous, error.stops_run)
            assert isinstance(error, TransientError)
            if error.may_have_arrived and not self.endpoint.spec.retry_safe:
                ambiguous = True
            if not self.policy.can_retry(attempt) or self.stopped.is_set():
                return Delivery("failed", error.http_status, {}, attempt, f"{error} after {attempt} attempts", ambiguous)
            self._sleep(self.policy.delay(attempt, error.retry_after))
            if self.stopped.is_set():
                return Delivery("failed", error.http_status, {}, attempt, f"{error}; run stopped", ambiguous)

    def stop(self) -> None:
        self.stopped.set()

