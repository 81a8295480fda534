"""What a person (on a terminal) and a log pipeline (JSON lines) see while a run sends.

The terminal test runs the real command on a pseudo-terminal, as a person's shell does, against the sandbox.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.conftest import ROOT, audience_job, run_cli, write_job

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _source(tmp_path: Path) -> Path:
    """400 valid addresses, 3 invalid rows and 2 duplicates."""
    source = tmp_path / "customers.csv"
    rows = [f"user{i}@example.com" for i in range(400)] + ["not-an-email"] * 3 + ["user1@example.com", "user2@example.com"]
    source.write_text("Email Address\n" + "\n".join(rows) + "\n")
    return source


def _on_a_terminal(command: list[str], env: dict[str, str], interrupt_when: str, timeout: float = 60) -> str:
    """Everything `command` wrote to its terminal (stdout and stderr), Ctrl-C'd once `interrupt_when` shows."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                               stdout=secondary, stderr=secondary)
    os.close(secondary)
    output, interrupted, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(primary, 65536)
                except OSError:  # the process closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if not interrupted and re.search(interrupt_when, ESCAPES.sub("", output.decode(errors="replace"))):
                process.send_signal(signal.SIGINT)
                interrupted = True
            if process.poll() is not None and not ready:
                break
    finally:
        process.kill()
        process.wait()
        os.close(primary)
    return output.decode(errors="replace")


def test_the_terminal_shows_a_bar_with_totals_and_time_left_and_a_warning_starts_a_line_of_its_own(
    tmp_path, sandbox, sandbox_env,
) -> None:
    job = audience_job(tmp_path, _source(tmp_path), limits={"batch_size": 10, "requests_per_second": 4, "concurrency": 1})
    command = [sys.executable, "-m", "pipeline", "run", str(write_job(tmp_path, job))]
    # Ctrl-C once a few batches are done: the run logs a warning while the bar is showing.
    shown = _on_a_terminal(command, sandbox_env, interrupt_when=r"\b[4-9] of ~?40 batches")
    text = ESCAPES.sub("", shown)
    assert re.search(r"sending \S+ \d+ of ~?400 identifiers", text), text[-2000:]
    assert re.search(r"\d+ of ~?40 batches, about \d+ s left; 3 rejected, 2 duplicates so far", text), text[-2000:]
    # The warning begins a line (or follows a carriage return that erased the bar), never the bar's tail.
    pieces = [piece for line in text.split("\n") for piece in line.split("\r") if re.search("WARNING|ERROR", piece)]
    assert any("WARNING interrupted" in piece for piece in pieces), text[-2000:]
    for piece in pieces:
        assert re.match(r"\d\d:\d\d:\d\d (WARNING|ERROR) ", piece), repr(piece)


def test_json_logs_carry_each_batch_and_the_summary_as_keys(tmp_path, sandbox, sandbox_env) -> None:
    job = audience_job(tmp_path, _source(tmp_path), limits={"batch_size": 100, "requests_per_second": 4})
    done = run_cli("run", str(write_job(tmp_path, job)), "--log-format", "json", env=sandbox_env)
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    batches = [entry for entry in entries if "batch" in entry]
    assert sorted(entry["batch"] for entry in batches) == [0, 1, 2, 3]
    for entry in batches:
        assert entry["status"] == "accepted" and entry["records"] == 100 and entry["http_status"] == 201
        assert entry["attempts"] == 1 and entry["batches_total"] == 4 and entry["identifiers_total"] == 400
        assert entry["level"] == "info" and entry["message"].startswith(f"batch {entry['batch']}: accepted")
    assert max(entry["batches_done"] for entry in batches) == 4
    destination = next(entry["destination"] for entry in entries if "destination" in entry)
    assert destination["endpoint"] == "audience_import" and destination["list"] == "US_Customers"
    summary = entries[-1]["summary"]
    assert summary["identifiers_accepted"] == 400 and summary["rows_rejected"] == 3 and summary["exit_code"] == 0
