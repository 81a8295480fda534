"""`make mutants`: break guarantee-critical code on purpose, one mutant at a time, and check a test sees it.

Each mutant of tests/mutation_catalogue.py is applied to a copy of the project (the working tree as it is,
uncommitted changes included), the tests the Guarantees table (docs/guarantees.md) names for it run there, and the mutant is
killed when one of them fails. Prints one line per mutant and a tally; exits 1 when any survived.

    python scripts/mutants.py               # every mutant (about six minutes)
    python scripts/mutants.py M1 R2         # these only (a name, or a prefix such as M1)

A curated list rather than mutmut or cosmic-ray: their generated mutants (hundreds across these modules) each
need the integration tests, which start the CLI and the sandbox as processes; at seconds per test that is hours,
and a generated mutant names no promise. Here every mutant is a plausible bug with the test meant to catch it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.mutation_catalogue import MUTANTS, Mutant  # noqa: E402  (the project root is on the path only now)

TIMEOUT_SECONDS = 600  # per mutant: a mutant that hangs the tests counts as killed, and says so


def project_files() -> list[str]:
    """Tracked and untracked files, as git sees them (.venv, outputs and caches left out)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout
    return [name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


def copy_project(target: Path) -> None:
    for name in project_files():
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, destination)


def apply(mutant: Mutant, copy: Path) -> dict[Path, str]:
    """Apply every edit of `mutant` to `copy`; returns the files' original texts."""
    originals: dict[Path, str] = {}
    for edit in mutant.edits:
        path = copy / edit.path
        current = path.read_text()
        originals.setdefault(path, current)
        if current.count(edit.before) != 1:
            raise ValueError(f"{mutant.name}: {edit.path} holds its text {current.count(edit.before)} times, not once")
        path.write_text(current.replace(edit.before, edit.after))
    return originals


def run_tests(mutant: Mutant, copy: Path) -> tuple[str, str, float]:
    """('killed' | 'survived' | 'error', detail, seconds)."""
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *mutant.tests]
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        return "killed", f"the tests hung past {TIMEOUT_SECONDS}s", time.monotonic() - started
    seconds = time.monotonic() - started
    if done.returncode == 0:
        return "survived", "", seconds
    if done.returncode == 1:
        failed = [line.split(" ", 2)[1] for line in done.stdout.splitlines() if line.startswith("FAILED ")]
        return "killed", failed[0] if failed else "a test failed", seconds
    said = (done.stdout + done.stderr).strip().splitlines()
    return "error", said[-1] if said else f"pytest exited {done.returncode}", seconds


def selected(names: list[str]) -> list[Mutant]:
    if not names:
        return MUTANTS
    chosen = [m for m in MUTANTS if any(m.name == n or m.name.startswith(n) for n in names)]
    if not chosen:
        raise SystemExit(f"no mutant named {', '.join(names)}; known: {', '.join(m.name for m in MUTANTS)}")
    return chosen


def main(argv: list[str]) -> int:
    mutants = selected(argv)
    tally: dict[str, int] = {"killed": 0, "survived": 0, "error": 0}
    with tempfile.TemporaryDirectory(prefix="rokt-mutants-") as scratch:
        copy = Path(scratch)
        copy_project(copy)
        print(f"{len(mutants)} mutant(s), applied one at a time in {copy}\n", flush=True)
        for mutant in mutants:
            originals = apply(mutant, copy)
            try:
                verdict, detail, seconds = run_tests(mutant, copy)
            finally:
                for path, text in originals.items():
                    path.write_text(text)
            tally[verdict] += 1
            print(f"{verdict.upper():<9} {mutant.name:<16} {seconds:6.1f}s  {mutant.what}" + (f"\n{'':28}{detail}" if detail else ""),
                  flush=True)
    print(f"\n{tally['killed']} killed, {tally['survived']} survived, {tally['error']} errors, of {len(mutants)}")
    return 0 if tally["killed"] == len(mutants) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
