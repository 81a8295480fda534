"""Run a command and report its own peak RSS, as /usr/bin/time -v does: `python -S _spawn.py RESULT -- ARGV...`.

Linux charges a child, at exec, with the peak RSS of the address space it replaces; a child spawned
straight from the benchmark process (vfork) therefore reports at least the benchmark's own peak. This
tiny process (no imports beyond os) forks the real command instead, so the figure is the command's own.
"""

import os
import sys
import time


def main() -> int:
    result_path, separator, *argv = sys.argv[1:]
    assert separator == "--" and argv
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    with open(result_path, "w") as handle:
        handle.write(f"{code} {wall!r} {usage.ru_maxrss}\n")
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    raise SystemExit(main())
