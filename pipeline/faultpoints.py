"""Named points where the crash tests kill the process, to prove resume at exactly the worst moments.

Set ROKT_PIPELINE_KILL_AT=<point>:<n> to SIGKILL the process the n-th time it reaches <point>. Unset (always,
outside the tests), reaching a point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

_counts: Counter[str] = Counter()
_lock = threading.Lock()
_target = os.environ.get("ROKT_PIPELINE_KILL_AT", "")


def reached(point: str) -> None:
    if not _target.startswith(point + ":"):
        return
    with _lock:
        _counts[point] += 1
        if _counts[point] == int(_target.rsplit(":", 1)[1]):
            os.kill(os.getpid(), signal.SIGKILL)
