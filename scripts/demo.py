"""`make demo`: start the local sandbox, run every job in configs/demo/ against it, show what happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from pipeline.sandbox.state import Credentials
from pipeline.sandbox.process import start_sandbox_process
from pipeline.words import plural

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_ENV = Credentials().as_environment()
# Rokt publishes 10 requests a minute for the Partnerships API: the demo's two Partnerships jobs (about 40 requests)
# would take four minutes. The demo's sandbox counts a minute of 3 s, and the jobs are told the same.
DEMO_MINUTE_SECONDS = "3"


def main() -> int:
    sandbox = start_sandbox_process("--minute-seconds", DEMO_MINUTE_SECONDS)
    print(f"sandbox: {sandbox.url} (per-minute limits count a minute of {DEMO_MINUTE_SECONDS} s here, to keep the demo short)\n")
    env = {**os.environ, **SANDBOX_ENV, "ROKT_SANDBOX_URL": sandbox.url, "ROKT_PIPELINE_TEST_MINUTE_SECONDS": DEMO_MINUTE_SECONDS}
    failures = 0
    try:
        for job in sorted((ROOT / "configs" / "demo").glob("*.yaml")):
            print(f"$ rokt-pipeline run {job.relative_to(ROOT)}")
            done = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", str(job)], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
            print("  " + done.stdout.strip().replace("\n", "\n  "))
            if done.returncode:
                failures += 1
                print(f"  exit {done.returncode}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
            print()
        state = sandbox.state()
    finally:
        sandbox.stop()
    print("the sandbox received:")
    print(_received_table(state))
    print(f"limit violations seen by the sandbox: {len(state['violations'])}")
    print("\noutputs (manifest.jsonl, summary.json, rejects.csv) are under out/demo/")
    return 1 if failures else 0


def _received_table(state: dict) -> str:
    """What the sandbox acted on, one line per endpoint, action and identifier kind, in aligned columns."""
    received: Counter = Counter()
    for request in state["received"]:
        received[(request["family"], request.get("action", "-"), request.get("key", "-"), "identifier")] += request.get("count", 1)
    for deletion in state["partnerships"]["deletions"]:
        received[("account_deletion", "-", "account id", "account")] += 1
    rows = [(family, action, key, plural(count, unit)) for (family, action, key, unit), count in sorted(received.items())]
    header = ("endpoint", "action", "sent as", "received")
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(4)]
    return "\n".join("  " + "  ".join(cell.ljust(width) if column < 3 else cell.rjust(width)
                                      for column, (cell, width) in enumerate(zip(row, widths)))
                     for row in [header, *rows])


if __name__ == "__main__":
    raise SystemExit(main())
