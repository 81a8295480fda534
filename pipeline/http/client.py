"""Send one request with retries, within the run's limits, and say exactly what happened."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, TypeVar

import requests
import urllib3.exceptions

from pipeline.config import JobConfig
from pipeline.durations import describe_duration
from pipeline.endpoints.base import Endpoint, HttpRequest, Recovered, request_id_of
from pipeline.errors import CredentialsExpired, SendError, TerminalError, TransientError
from pipeline.http.json_body import encode_json
from pipeline.http.limits import RequestGate, SlidingWindowRateLimiter
from pipeline.http.retry import RetryPolicy
from pipeline.http.session import CONNECT_TIMEOUT_SECONDS, pooled_session
from pipeline.http.stop import StopSwitch
from pipeline.ledger import utc_now

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
    started_at: str | None = None  # when its first attempt got its start (None: it never did)


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
    recovered: Recovered | None = None
    before_first_send: Callable[[str], None] | None = None
    started_at: str | None = None  # when the first attempt got its start
    failures: int = 0  # attempts that failed with a real error (what retry.max_attempts counts)
    throttles: int = 0  # answers that said "slow down" (429, 503 with Retry-After)
    throttled_for: float = 0.0  # seconds waited out for them (what retry.max_throttle_seconds bounds)


class Sender(StopSwitch):
    """Shared by every worker of a run: one session, its gates, one policy; and the run's stop switch."""

    def __init__(self, session: requests.Session, gates: dict[str | None, RequestGate], policy: RetryPolicy,
                 timeout: float, endpoint: Endpoint, retry_budget: float = float("inf")):
        super().__init__()
        self.session = session
        self.gates = gates  # None: the endpoint's writes; else the other limits it declares (EndpointSpec.rates)
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

    def deliver(self, request: HttpRequest, before_first_send: Callable[[str], None] | None = None) -> Delivery:
        """A write: the endpoint reads the answer; not-idempotent endpoints flag answers lost after sending.

        `before_first_send(started_at)` runs once, right before the first byte of the first attempt that gets its
        rate start (the runner records there that the request is about to go out).
        """
        outcome = self._attempts(request, self.endpoint.read_response, honour_stop=True,
                                 before_first_send=before_first_send, recover=True)
        if outcome.attempts == 0:
            return Delivery("not_sent", None)
        delivery = self._delivery(outcome)
        delivery.started_at = outcome.started_at
        return delivery

    def _delivery(self, outcome: _Outcome) -> Delivery:
        error = outcome.error
        status = outcome.response.status_code if outcome.response is not None else (error.http_status if error else None)
        # The answer's own id, what the API's support asks for, on every line that had an answer.
        ids = {"request_id": request_id} if (request_id := _request_id(outcome.response)) else {}
        if outcome.recovered is not None:  # the answer was lost, and the API told what it had been
            recovered = outcome.recovered
            return Delivery("accepted", recovered.http_status or status, ids | recovered.ids, outcome.attempts,
                            notes=recovered.notes)
        if error is None:
            return Delivery("accepted", status, ids | outcome.value, outcome.attempts, ambiguous=outcome.ambiguous)
        if isinstance(error, TerminalError):
            return Delivery("rejected", status, ids, outcome.attempts, str(error), outcome.ambiguous, error.stops_run)
        suffix = "; run stopped" if self.stopped.is_set() else f" after {outcome.attempts} attempts"
        return Delivery("failed", status, ids, outcome.attempts, f"{error}{suffix}", outcome.ambiguous)

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
                  before_first_send: Callable[[str], None] | None = None, recover: bool = False) -> _Outcome:
        outcome = _Outcome(before_first_send=before_first_send)
        refreshed = False
        body = self._encoded(request)
        while True:
            outcome.attempts += 1
            response = None
            try:
                response = self._send_once(request, body, honour_stop, outcome)
                if response is None:  # stopped (Ctrl-C, a terminal error) before this attempt: it is not made
                    outcome.attempts -= 1  # 0 for a first attempt: deliver() says not_sent
                    return outcome
                outcome.response = response
                outcome.value, outcome.error = interpret(response), None
                self.gates[request.rate].rate.succeeded()
                return outcome
            except requests.RequestException as exc:
                error: SendError = network_error(exc)
            except SendError as exc:
                error = exc
            outcome.response, outcome.error = response, error
            if isinstance(error, TransientError) and error.throttled and response is not None:
                # The run slows down, and creeps back once answers succeed. Not for a busy token endpoint (no
                # response here): it has limits of its own, and the API's pace is not what it asks to change.
                self.gates[request.rate].rate.throttled()
            if isinstance(error, CredentialsExpired):
                if not refreshed and self.endpoint.refresh_credentials():
                    refreshed = True
                    continue
                outcome.error = TerminalError(f"{error}; refreshing the credentials did not help", http_status=error.http_status, stops_run=True)
                return outcome
            if isinstance(error, TerminalError):
                return outcome
            assert isinstance(error, TransientError)
            if recover and response is not None and error.may_have_arrived and self._recovered(response, outcome):
                return outcome
            if not self._wait_to_retry(error, outcome):
                return outcome

    def _encoded(self, request: HttpRequest) -> bytes | None:
        # Serialised once, before any rate slot is taken: a 100,000-identifier body takes 10-20 ms, which would
        # otherwise delay the request's arrival after its start was counted. One body at a time: at the start of
        # a run four workers get a batch at once, and encoding them side by side on two busy cores made the
        # first body wait for all four (ready 0.2 s after its batch instead of 0.1 s, 10M-row end-to-end run).
        if request.json is None:
            return None
        with self._encoding:
            return encode_json(request.json)

    def _send_once(self, request: HttpRequest, body: bytes | None, honour_stop: bool,
                   outcome: _Outcome) -> requests.Response | None:
        """One attempt, within the limits; None when the run stopped before it got its start."""
        # Prepared (headers, proxies, CA bundle) before the slot: between taking a rate start and the request reaching
        # the server there is only the socket write, so the server sees the spacing the limiter made even when every
        # core is busy.
        prepared = self.session.prepare_request(requests.Request(
            request.method, request.url, headers=request.headers, data=body, params=request.params))
        settings = self.session.merge_environment_settings(prepared.url, {}, None, None, None)
        # A token that must be fetched is fetched before the slot: its retries never hold a start nor a place in flight.
        self.endpoint.auth_headers()
        gate = self.gates[request.rate]
        with gate.slot(self.stopped if honour_stop else None) as start:
            if start is None:
                return None
            # Credentials go on only now (cached, unless the wait outlived the token): a request can wait for its
            # start longer than a short-lived token lives.
            prepared.headers.update(self.endpoint.auth_headers())
            if outcome.started_at is None:  # the first attempt to get its start (one that failed before sent nothing)
                outcome.started_at = utc_now()
                if outcome.before_first_send is not None:
                    outcome.before_first_send(outcome.started_at)
            gate.departing(start)  # after the credentials and the fsynced sending line: the start is when it leaves
            return self.session.send(prepared, timeout=(CONNECT_TIMEOUT_SECONDS, self.timeout), **settings)

    def _recovered(self, response: requests.Response, outcome: _Outcome) -> bool:
        """Whether the endpoint learnt the outcome of an error answer after which the API may have acted."""
        try:
            outcome.recovered = self.endpoint.recover(response, self.fetch)
        except TerminalError as exc:  # the API says the request failed: nothing to retry
            outcome.error = exc
            return True
        if outcome.recovered is None:
            return False
        outcome.error = None
        return True

    def _wait_to_retry(self, error: TransientError, outcome: _Outcome) -> bool:
        """Wait before the next attempt; False when there is to be none (the outcome says why)."""
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
            return False
        if error.retry_after is not None:
            for gate in self.gates.values():  # a Retry-After speaks for the account: every start of the run waits
                gate.hold(error.retry_after)
        if self.stopped.is_set():
            return False
        if error.throttled:
            delay = self._throttle_delay(error, outcome)
        else:
            outcome.failures += 1
            if not self.policy.can_retry(outcome.failures):
                return False
            delay = self.policy.delay(outcome.failures, error.retry_after)
            if not self._spend_retry_budget(delay):
                outcome.error = TransientError(f"{error}; the run's retry budget of {self.retry_budget:g}s is spent",
                                               http_status=error.http_status)
                return False
        if delay is None:
            return False
        self.stopped.wait(delay)  # a stop wakes it at once
        return not self.stopped.is_set()

    def _throttle_delay(self, error: TransientError, outcome: _Outcome) -> float | None:
        """How long to wait out a "slow down" answer: its Retry-After, else a backoff that grows with each one. None
        once the request has waited retry.max_throttle_seconds: the API is refusing everything, so the run stops."""
        outcome.throttles += 1
        delay = self.policy.delay(outcome.throttles, error.retry_after)
        if outcome.throttled_for + delay <= self.policy.max_throttle:
            outcome.throttled_for += delay
            return delay
        waited = describe_duration(outcome.throttled_for)
        outcome.error = TransientError(f"{error}; still throttled after {waited} (retry.max_throttle_seconds="
                                       f"{self.policy.max_throttle:g})", http_status=error.http_status)
        self.stop(f"the API kept answering 'slow down' for {waited}, past retry.max_throttle_seconds="
                  f"{self.policy.max_throttle:g}: rerun later with the same --run-id")
        return None

    @property
    def writes_rate(self) -> SlidingWindowRateLimiter:
        """The writes' rate limiter: the pace it keeps to after throttling, the throttled answers it saw."""
        return self.gates[None].rate

    def close(self) -> None:
        self.session.close()


def _request_id(response: requests.Response | None) -> str | None:
    return None if response is None else request_id_of(response)


def sender_for(job: JobConfig, endpoint: Endpoint, session: requests.Session | None = None) -> Sender:
    spec = endpoint.spec
    retry = job.destination.retry
    policy = RetryPolicy(retry.max_attempts, retry.base_delay_seconds, retry.max_delay_seconds, retry.max_retry_after_seconds,
                         retry.max_throttle_seconds)
    gates: dict[str | None, RequestGate] = {None: RequestGate(spec.limits)}
    gates |= {name: RequestGate(limits) for name, limits in spec.rates.items()}
    return Sender(
        session or pooled_session(spec.limits.concurrency + sum(limits.concurrency for limits in spec.rates.values())),
        gates,
        policy,
        job.destination.timeout_seconds,
        endpoint,
        retry_budget=retry.max_total_retry_seconds,
    )
