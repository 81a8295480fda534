"""Run a child process and measure it: wall time and its own peak RSS (wait4 in bench/_spawn.py)."""

from __future__ import annotations

import compileall
import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.sandbox.state import Credentials
from typing import Any

import yaml

from bench.data import BENCH_DIR, ROOT

RUNS_DIR = BENCH_DIR / "runs"
LAUNCHER = Path(__file__).resolve().parent / "_launch.py"
SPAWNER = Path(__file__).resolve().parent / "_spawn.py"
SANDBOX_ENV = Credentials().as_environment()  # what the sandbox accepts by default, as the demo uses it


@dataclass
class Child:
    argv: list[str]
    returncode: int
    wall: float  # seconds, from fork to exit
    peak_rss: int  # bytes: the command's own ru_maxrss (see _spawn.py)
    started: float  # time.time() just before spawning, to compare with timestamps the child or the sandbox wrote
    stdout: str
    stderr: str
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> Child:
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"{' '.join(self.argv[:4])} … exited {self.returncode}:\n{tail}")
        return self


@functools.cache
def byte_compile() -> None:
    """Write the bytecode of pipeline/ and bench/, as pip does when it installs a wheel (once per process).

    The project is installed editable, so its modules are compiled on first import and cached in __pycache__,
    unless the environment forbids writing it (PYTHONDONTWRITEBYTECODE, set on this machine): then every
    measured process compiled the pipeline's 40-odd modules again, about 30 ms that no installed copy pays
    (1M-row CSV dry run, ten alternated runs each: 0.665 s median without the cache, 0.635 s with it). Python
    compiles a module again in memory whenever its source's timestamp or size no longer match the cache.
    """
    for package in ("pipeline", "bench"):
        if not compileall.compile_dir(ROOT / package, quiet=1):
            raise SystemExit(f"cannot byte-compile {package}/")


def run_child(argv: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> Child:
    """Run argv to completion through bench/_spawn.py, which reports the command's own peak RSS."""
    byte_compile()
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    out_path, err_path, result_path = RUNS_DIR / ".stdout", RUNS_DIR / ".stderr", RUNS_DIR / ".rusage"
    result_path.unlink(missing_ok=True)
    spawn = [sys.executable, "-S", str(SPAWNER), str(result_path), "--", *argv]
    with open(out_path, "w+b") as out, open(err_path, "w+b") as err:
        started_wall = time.time()
        process = subprocess.Popen(spawn, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise RuntimeError(f"{' '.join(argv[:4])} … did not finish within {timeout:.0f}s") from None
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    code, wall, max_rss_kib = result_path.read_text().split()
    return Child(argv, int(code), float(wall), int(max_rss_kib) * 1024, started_wall, stdout, stderr)


def module_argv(module: str, *args: str, hide_extras: bool = True) -> list[str]:
    """`python -m MODULE ARGS`, through the launcher that hides pandas and hypothesis (see _launch.py) unless not
    `hide_extras`."""
    return [sys.executable, *([str(LAUNCHER)] if hide_extras else []), "-m", module, *args]


def pipeline_argv(*args: str, with_pandas: bool = False) -> list[str]:
    """`python -m pipeline ARGS`, as installed: pandas and hypothesis hidden unless `with_pandas`."""
    return module_argv("pipeline", *args, hide_extras=not with_pandas)


def write_job(name: str, job: dict[str, Any]) -> Path:
    path = RUNS_DIR / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def audience_job(name: str, source: Path, base_url: str = "http://127.0.0.1:9") -> dict[str, Any]:
    """A v3 audience import of the generated file at the documented limits (the defaults)."""
    return {
        "job": name,
        "source": {"uri": str(source), "columns": {"email": "Email Address"}},
        "destination": {
            "endpoint": "audience_import",
            "base_url": base_url,
            "account_id": "123456789",
            "action": "include",
            "list": "Bench",
            "credentials": {"public_key": "${ROKT_PUBLIC_KEY}", "secret_key": "${ROKT_SECRET_KEY}"},
        },
        "output": {"uri": str(RUNS_DIR / "out")},
    }


def run_summary(child: Child) -> dict[str, Any]:
    """The summary.json of the run a CLI child just made (its output line names the folder)."""
    import json

    for line in child.stdout.splitlines():
        if line.startswith("output: "):
            folder = Path(line.removeprefix("output: ").strip())
            folder = folder if folder.is_absolute() else ROOT / folder
            summary = json.loads((folder / "summary.json").read_text())
            summary["_folder"] = str(folder)
            return summary
    raise RuntimeError(f"no output folder in the CLI's output: {child.stdout[-500:]!r}")


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f}"
