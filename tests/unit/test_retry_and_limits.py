"""Retry policy, Retry-After parsing and the sliding-window rate limiter, mostly with a fake clock."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

from pipeline.config import Limits
from pipeline.http.limits import TEST_MINUTE_SECONDS, SlidingWindowRateLimiter, rate_window
from pipeline.http.retry import RetryPolicy, parse_retry_after


def test_retry_after_in_seconds_and_as_http_date() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now=now) == 7.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=7), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_is_capped_and_jittered() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=8.0, rng=random.Random(1))
    delays = [policy.delay(attempt) for attempt in range(1, 9)]
    assert all(0.5 <= d <= 1.0 for d in delays[:1])
    assert all(4.0 <= d <= 8.0 for d in delays[4:])
    assert len(set(delays)) == len(delays)  # jitter


def test_retry_after_is_a_floor_and_a_longer_wish_is_not_cut_short() -> None:
    policy = RetryPolicy(base_delay=0.1, max_retry_after=60, rng=random.Random(2))
    assert 5.0 <= policy.delay(1, retry_after=5) <= 5.1
    assert policy.honours(60) and not policy.honours(3600)  # fail, rather than retry before the server allows
    assert parse_retry_after("2.5") == 2.5 and parse_retry_after("-1") is None


def test_attempts_are_bounded() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.can_retry(2) and not policy.can_retry(3)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(clock: FakeClock | None = None, *, per_second: float | None = None, per_minute: float | None = None,
            margin: float = 0.0) -> SlidingWindowRateLimiter:
    window = rate_window(Limits(batch_size=1, requests_per_second=per_second, requests_per_minute=per_minute, concurrency=1))
    if clock is None:  # the real clock
        return SlidingWindowRateLimiter(*window, margin=margin)
    return SlidingWindowRateLimiter(*window, margin=margin, clock=clock, sleep=clock.sleep)


def test_starts_are_spaced_evenly_not_released_a_window_at_a_time() -> None:
    clock = FakeClock()
    limiter_ = limiter(clock, per_second=4, margin=0.05)
    starts = []
    for _ in range(9):
        limiter_.acquire()
        starts.append(clock.now)
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert all(abs(gap - 1.05 / 4) < 1e-9 for gap in gaps)  # 262.5 ms apart: the window and its margin, in four


def test_a_request_that_leaves_late_moves_its_start_and_the_spacing_after_it() -> None:
    clock = FakeClock()
    limiter_ = limiter(clock, per_second=4)
    first = limiter_.acquire()
    clock.now += 0.2  # recorded and fsynced, or waited for a core, before its first byte
    limiter_.departing(first)
    limiter_.acquire()
    assert clock.now - (first + 0.2) >= 0.25  # spaced from when the first left, not from when it took its start


def test_throttling_slows_the_rate_down_and_successes_bring_it_back() -> None:
    clock = FakeClock()
    limiter_ = limiter(clock, per_second=4)
    for _ in range(3):  # a burst of 429s answering one window's requests: one signal
        limiter_.throttled()
    assert limiter_.pace == 0.7 and limiter_.throttled_answers == 3
    clock.now += 1.0
    limiter_.throttled()
    assert abs(limiter_.pace - 0.49) < 1e-9
    for _ in range(100):  # throttled again and again: never below a tenth of the limit
        clock.now += 1.0
        limiter_.throttled()
    assert limiter_.pace == limiter_.FLOOR == limiter_.lowest_pace
    for _ in range(4):  # a window's worth of successes restores the limit
        limiter_.succeeded()
    assert limiter_.pace == 1.0 and limiter_.lowest_pace == limiter_.FLOOR
    clock.now += 1.0
    start = clock.now
    limiter_.acquire()
    limiter_.throttled()
    limiter_.acquire()
    assert clock.now - start >= 0.25 / 0.7  # the next start waits longer while throttled


def test_never_more_than_capacity_starts_in_any_window() -> None:
    clock = FakeClock()
    limiter_ = limiter(clock, per_second=4)
    starts = []
    for _ in range(40):
        limiter_.acquire()
        starts.append(clock.now)
    for i, start in enumerate(starts):
        assert sum(1 for other in starts[i:] if other - start < 1.0) <= 4
    assert starts[-1] - starts[0] < 10.0  # and it is not slower than the limit


def test_a_per_minute_limit_counts_starts_in_any_minute(monkeypatch) -> None:
    clock = FakeClock()
    limiter_ = limiter(clock, per_minute=10)
    starts = []
    for _ in range(35):
        limiter_.acquire()
        starts.append(clock.now)
    for i, start in enumerate(starts):
        assert sum(1 for other in starts[i:] if other - start < 60.0) <= 10
    gaps = [later - earlier for earlier, later in zip(starts, starts[1:])]
    assert min(gaps) >= 6.0 and max(gaps) < 6.01  # spaced evenly, one every six seconds, not ten at once
    monkeypatch.setenv(TEST_MINUTE_SECONDS, "3")  # the tests' short minute, as the sandbox's --minute-seconds
    assert rate_window(Limits(batch_size=1, requests_per_minute=10, concurrency=1)) == (10, 3.0)

def test_a_hold_delays_every_start_until_it_has_passed() -> None:
    clock = FakeClock()
    limiter_ = limiter(clock, per_second=4)
    limiter_.acquire()
    limiter_.hold(5.0)
    limiter_.hold(2.0)  # a shorter hold never cuts a longer one short
    limiter_.acquire()
    assert clock.now >= 105.0


def test_fractional_rate() -> None:
    clock = FakeClock()
    half = limiter(clock, per_second=0.5)
    half.acquire()
    half.acquire()
    assert clock.now >= 102.0
    between_one_and_two = limiter(clock, per_second=1.5)
    starts = []
    for _ in range(4):
        between_one_and_two.acquire()
        starts.append(clock.now)
    assert all(later - earlier >= 1.0 for earlier, later in zip(starts, starts[1:]))  # never two in one second


def test_a_stop_ends_the_wait_for_a_start_and_takes_none() -> None:
    one = limiter(per_second=1)  # the real clock: the stop arrives during a real wait
    assert one.acquire() is not None
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    assert one.acquire(stop) is None  # woken by the stop, long before the second's start is free
    assert len(one._starts) == 1
    assert one.acquire(stop) is None  # already stopped, the window still full: it returns at once, empty-handed


def _sandbox_state(requests_per_second: float = 4, concurrency: int = 10):
    from pipeline.sandbox.state import Credentials, FamilyLimits, SandboxState

    return SandboxState({"family": FamilyLimits(requests_per_second, concurrency)}, Credentials())


def _enter(state, arrivals: list[float]) -> list[str | None]:
    answers = []
    for at in arrivals:
        answers.append(state.enter("family", at))
        state.leave("family")
    return answers


def test_sandbox_counts_a_fifth_start_within_a_second_as_a_violation() -> None:
    state = _sandbox_state()
    assert _enter(state, [0.0, 0.1, 0.2, 0.3]) == [None] * 4
    assert _enter(state, [0.9])[0] is not None
    assert state.violations and state.counters["family"].max_starts_in_window == 5


def test_sandbox_counts_arrivals_in_arrival_order_even_when_recorded_late() -> None:
    """A request whose body took longer to read is counted at its arrival, before one recorded earlier."""
    state = _sandbox_state()
    assert _enter(state, [10.0, 10.2, 10.4, 10.6]) == [None] * 4
    assert _enter(state, [9.95])[0] is not None  # recorded last, but it arrived within the same second as the four


def test_sandbox_accepts_a_client_that_keeps_to_the_limit() -> None:
    state = _sandbox_state()
    arrivals = [group * 1.0 + offset for group in range(5) for offset in (0.0, 0.01, 0.02, 0.03)]
    assert _enter(state, arrivals) == [None] * len(arrivals)
    assert state.counters["family"].max_starts_in_window == 4


def test_sandbox_survives_a_request_counted_long_after_it_arrived() -> None:
    """A slow upload reaches the counter seconds after its headers: counted, not crashed on, not leaked in flight."""
    state = _sandbox_state(concurrency=1)
    assert _enter(state, [10.0, 13.0]) == [None, None]
    assert _enter(state, [8.0]) == [None]
    assert state.counters["family"].in_flight == 0
