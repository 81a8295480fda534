"""Sending under pressure: "slow down" answers never fail a run, and the limits hold on a loaded machine.

Judged by the sandbox's own record: what it received, every attempt (with the batch or subject it carried and the
fault it met), and the limit violations it counted.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

import pytest

from tests.conftest import audience_job, read_manifest, read_summary, received_identifiers, run_cli, unsubscribe_job, write_job

# 30% of answers say "slow down" (429 or 503, each with Retry-After) and 3% are lost after the server acted. The
# Retry-After is 0: a longer one holds every start of the run (as it should, for a real rate limit), and random
# refusals at this rate would then keep the run waiting more than sending.
THROTTLED_AND_LOST = [
    {"rate": 0.15, "status": 429, "retry_after": "0"},
    {"rate": 0.15 / 0.85, "status": 503, "retry_after": "0"},  # 15% of the rest: 30% in all
    {"rate": 0.03 / 0.70, "kind": "reset_after"},  # 3% of all answers
]
MOSTLY_THROTTLED = [{"rate": 0.6, "status": 429, "retry_after": "0"}]
FAST_UNSUBSCRIBES = {"requests_per_second": 500, "concurrency": 16}


def _emails(tmp_path, count: int):
    path = tmp_path / "people.csv"
    emails = [f"person{i}@example.com" for i in range(count)]
    path.write_text("email\n" + "\n".join(emails) + "\n")
    return path, set(emails)


def unsubscribes(tmp_path, sandbox):
    sandbox.limits({"nurture_unsubscribe": FAST_UNSUBSCRIBES})
    path, emails = _emails(tmp_path, 2000)
    return unsubscribe_job(tmp_path, path, limits=FAST_UNSUBSCRIBES), "nurture_unsubscribe", emails


def audience(tmp_path, sandbox):
    path, emails = _emails(tmp_path, 50_000)
    job = audience_job(tmp_path, path, columns={"email": "email"}, send="email", limits={"batch_size": 5000})
    return job, "audience_import", emails


@pytest.mark.parametrize("faults", [THROTTLED_AND_LOST, MOSTLY_THROTTLED], ids=["30%-throttled-3%-lost", "60%-429"])
@pytest.mark.parametrize("make_job", [unsubscribes, audience])
def test_throttling_never_fails_a_run(tmp_path, sandbox, sandbox_env, make_job, faults) -> None:
    job, family, expected = make_job(tmp_path, sandbox)
    sandbox.faults({"family": family, "method": "POST", "rates": faults, "seed": 11})
    done = run_cli("run", str(write_job(tmp_path, job)), env=sandbox_env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    state = sandbox.state()
    counts = Counter(received_identifiers(state, family))
    assert set(counts) == expected  # nothing lost
    writes = [a for a in state["attempts"] if a["family"] == family and a["method"] == "POST"]
    throttled = sum(1 for a in writes if a["fault"] == "status")
    assert throttled > len(writes) * 0.2  # the faults really came
    key = "digest" if family == "audience_import" else "subject"
    lost_answers = [a[key] for a in writes if a["fault"] == "reset_after"]
    lost = set(lost_answers)
    per_request = job["destination"]["limits"].get("batch_size", 1)
    assert sum(n - 1 for n in counts.values()) <= len(lost_answers) * per_request  # re-sent only where an answer was lost
    lines = [line for line in read_manifest(tmp_path / "out") if "status" in line]
    assert {line["status"] for line in lines} == {"accepted"}
    assert lost <= {line[key] for line in lines if line["ambiguous"]}  # and every such request flagged
    if family == "nurture_unsubscribe":
        resent = {hashlib.sha256(e.encode()).hexdigest() for e, n in counts.items() if n > 1}
        assert resent <= {line["subject"] for line in lines if line["ambiguous"]}
    rate = read_summary(tmp_path / "out")["sending_rate"]
    assert rate["throttled_answers"] == throttled and rate["lowest"] < rate["limit"]  # it slowed down, and says so
    assert state["violations"] == []


def test_a_run_refused_for_longer_than_its_throttle_budget_stops_cleanly(tmp_path, sandbox, sandbox_env) -> None:
    sandbox.faults({"family": "nurture_unsubscribe", "rates": [{"rate": 1.0, "status": 429}]})
    path, _ = _emails(tmp_path, 20)
    job = unsubscribe_job(tmp_path, path, retry={"base_delay_seconds": 0.1, "max_delay_seconds": 0.3, "max_throttle_seconds": 1.5})
    done = run_cli("run", str(write_job(tmp_path, job)), "--run-id", "refused", env=sandbox_env)
    assert done.returncode == 1
    facts = read_summary(tmp_path / "out")
    assert "kept answering 'slow down'" in facts["stopped_reason"] and "max_throttle_seconds=1.5" in facts["stopped_reason"]
    assert "rerun later with the same --run-id" in facts["stopped_reason"]
    attempts = len(sandbox.state()["attempts"])
    assert attempts > 6 * 2  # more than max_attempts (6) per request: "slow down" does not use them up
    assert facts["batches_by_status"].get("not_sent", 0) > 0 and facts["identifiers_left"] == 20


@contextmanager
def cpu_hogs(count: int = 2) -> Iterator[None]:
    """Busy loops on every core, as when other jobs share the worker."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait(timeout=10)


@pytest.mark.parametrize(("make_job", "family"), [
    (lambda tmp, path: audience_job(tmp, path, columns={"email": "email"}, limits={"batch_size": 10}), "audience_import"),
    (lambda tmp, path: unsubscribe_job(tmp, path), "nurture_unsubscribe"),
], ids=["audience_import-4/s", "nurture_unsubscribe-50/s"])
def test_limits_hold_with_both_cores_busy(tmp_path, sandbox, sandbox_env, make_job, family) -> None:
    path, _ = _emails(tmp_path, 300)
    with cpu_hogs():
        done = run_cli("run", str(write_job(tmp_path, make_job(tmp_path, path))), env=sandbox_env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    state = sandbox.state()
    assert state["violations"] == []
    # Near the limit, or the test proves nothing; not at it, for a shared CI machine (39 of 50 with a whole test
    # suite running beside the hogs).
    assert state["families"][family]["max_starts_in_window"] >= (4 if family == "audience_import" else 35)
