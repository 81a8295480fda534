"""Send one request with retries, within the run's limits, and say exactly what happened."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, TypeVar

import requests
import urllib3.exceptions

from pipeline.config import JobConfig
from pipeline.endpoints.base import Endpoint, HttpRequest
from pipeline.errors import CredentialsExpired, SendError, TerminalError, TransientError
from pipeline.http.json_body import encode_json
from pipeline.http.limits import RequestGate
from pipeline.http.retry import RetryPolicy
from pipeline.http.session import CONNECT_TIMEOUT_SECONDS, pooled_session
from pipeline.http.stop import StopSwitch

T = TypeVar("T")


@dataclass
class Delivery:
    status: Literal["accepted", "rejected", "failed", "not_sent"]  # not_sent: the run stopped before its first attempt
    http_status: int | None
    ids: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    error: str | None = None
    ambiguous: bool = False
    stops_run: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


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


@dataclass
class _Outcome:
    value: Any = None
    response: requests.Response | None = None
    error: SendError | None = None
    attempts: int = 0
    ambiguous: bool = False


class Sender(StopSwitch):
    """Shared by every worker of a run: one session, one gate, one policy; and the run's stop switch."""

    def __init__(self, session: requests.Session, gate: RequestGate, policy: RetryPolicy, timeout: float, endpoint: Endpoint,
                 retry_budget: float = float("inf")):
        super().__init__()
        self.session = session
        self.gate = gate
        self.policy = policy
        self.timeout = timeout
        self.endpoint = endpoint
        self.retry_budget = retry_budget
        self._retry_seconds = 0.0
        self._budget_lock = threading.Lock()
        self._encoding = threading.Lock()

    def _spend_retry_budget(self, delay: float) -> bool:
        """Waiting for retries is bounded per run: a hopeless run ends instead of retrying forever."""
        with self._budget_lock:
            if self._retry_seconds + delay > self.retry_budget:
                if not self.stopped.is_set():
                    self.stop_reason = f"retry budget spent: {self._retry_seconds:.1f}s of waiting for retries already"
                    self.stopped.set()
                return False
            self._retry_seconds += delay
            return True

    def deliver(self, request: HttpRequest, before_first_send: Callable[[], None] | None = None) -> Delivery:
        """A write: the endpoint reads the answer; not-idempotent endpoints flag answers lost after sending.

        `before_first_send` runs once, right before the first byte of the first attempt that gets its rate start
        (the runner records there that the request is about to go out).
        """
        outcome = self._attempts(request, self.endpoint.read_response, honour_stop=True, before_first_send=before_first_send)
        if outcome.attempts == 0:
            return Delivery("not_sent", None)
        error = outcome.error
        status = outcome.response.status_code if outcome.response is not None else (error.http_status if error else None)
        if error is None:
            return Delivery("accepted", status, outcome.value, outcome.attempts, ambiguous=outcome.ambiguous)
        if isinstance(error, TerminalError):
            return Delivery("rejected", status, {}, outcome.attempts, str(error), outcome.ambiguous, error.stops_run)
        suffix = "; run stopped" if self.stopped.is_set() else f" after {outcome.attempts} attempts"
        return Delivery("failed", status, {}, outcome.attempts, f"{error}{suffix}", outcome.ambiguous)

    def fetch(self, request: HttpRequest) -> requests.Response:
        """A read (idempotent): the answer on 2xx, else the final error is raised.

        Made even once the run is stopping: reads follow up writes already sent (a deletion task's ID, an
        operation's state), and the record of what was sent needs them. They are not retried after a stop.
        """
        outcome = self._attempts(request, self.endpoint.check_status, honour_stop=False)
        if outcome.error is not None:
            raise outcome.error
        assert outcome.response is not None
        return outcome.response

    def _attempts(self, request: HttpRequest, interpret: Callable[[requests.Response], T], *, honour_stop: bool,
                  before_first_send: Callable[[], None] | None = None) -> _Outcome:
        outcome = _Outcome()
        refreshed = False
        # Serialised once, before any rate slot is taken: a 100,000-identifier body takes 10-20 ms, which would
        # otherwise delay the request's arrival after its start was counted. One body at a time: at the start of
        # a run four workers get a batch at once, and encoding them side by side on two busy cores made the
        # first body wait for all four (ready 0.2 s after its batch instead of 0.1 s, 10M-row end-to-end run).
        if request.json is not None:
            with self._encoding:
                body = encode_json(request.json)
        else:
            body = None
        while True:
            outcome.attempts += 1
            response = None
            try:
                # Prepared (headers, auth, proxies, CA bundle) before the slot too: between taking a rate start
                # and the request reaching the server there is only the socket write, so the server sees the
                # spacing the limiter made even when every core is busy.
                prepared = self.session.prepare_request(requests.Request(
                    request.method, request.url, headers={**request.headers, **self.endpoint.auth_headers()},
                    data=body, params=request.params,
                ))
                settings = self.session.merge_environment_settings(prepared.url, {}, None, None, None)
                with self.gate.slot(self.stopped if honour_stop else None) as granted:
                    if not granted:  # stopped (Ctrl-C, a terminal error) before this attempt: it is not made
                        outcome.attempts -= 1  # 0 for a first attempt: deliver() says not_sent
                        return outcome
                    if before_first_send is not None:  # once: an attempt that failed before its slot sent nothing
                        before_first_send()
                        before_first_send = None
                    response = self.session.send(prepared, timeout=(CONNECT_TIMEOUT_SECONDS, self.timeout), **settings)
                outcome.response = response
                outcome.value = interpret(response)
                outcome.error = None
                return outcome
            except requests.RequestException as exc:
                error: SendError = network_error(exc)
            except SendError as exc:
                error = exc
            outcome.response, outcome.error = response, error
            if isinstance(error, CredentialsExpired):
                if not refreshed and self.endpoint.refresh_credentials():
                    refreshed = True
                    continue
                outcome.error = TerminalError(f"{error}; refreshing the credentials did not help", http_status=error.http_status, stops_run=True)
                return outcome
            if isinstance(error, TerminalError):
                return outcome
            assert isinstance(error, TransientError)
            if error.may_have_arrived:
                # The server may have acted: a retry may duplicate it (harmless only for idempotent calls).
                outcome.ambiguous = True
            if not self.policy.honours(error.retry_after):
                # Every other request would be told the same: the run stops, and what is left is sent by a rerun.
                outcome.error = TransientError(
                    f"{error}; the server asked to wait {error.retry_after:g}s, more than retry.max_retry_after_seconds="
                    f"{self.policy.max_retry_after:g}: rerun later with the same --run-id", http_status=error.http_status)
                self.stop(f"the API asked to wait {error.retry_after:g}s (retry.max_retry_after_seconds="
                          f"{self.policy.max_retry_after:g}); rerun later with the same --run-id")
                return outcome
            if error.retry_after is not None:
                self.gate.hold(error.retry_after)
            if not self.policy.can_retry(outcome.attempts) or self.stopped.is_set():
                return outcome
            delay = self.policy.delay(outcome.attempts, error.retry_after)
            if not self._spend_retry_budget(delay):
                outcome.error = TransientError(f"{error}; the run's retry budget of {self.retry_budget:g}s is spent",
                                               http_status=error.http_status)
                return outcome
            self.stopped.wait(delay)  # a stop wakes it at once
            if self.stopped.is_set():
                return outcome

    def close(self) -> None:
        self.session.close()


def sender_for(job: JobConfig, endpoint: Endpoint, session: requests.Session | None = None) -> Sender:
    limits = endpoint.spec.limits
    retry = job.destination.retry
    policy = RetryPolicy(retry.max_attempts, retry.base_delay_seconds, retry.max_delay_seconds, retry.max_retry_after_seconds)
    return Sender(
        session or pooled_session(limits.concurrency),
        RequestGate(limits.requests_per_second, limits.concurrency),
        policy,
        job.destination.timeout_seconds,
        endpoint,
        retry_budget=retry.max_total_retry_seconds,
    )
