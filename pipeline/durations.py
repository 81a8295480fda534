"""Durations as people write and read them: `45m`, `1h30m`, `90s` in, `1 h 40 min` out."""

from __future__ import annotations

import re
from typing import Any


def parse_duration(value: Any) -> float:
    """Seconds from `45m`, `1h30m`, `90s`, `2h` or a plain number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        match = _DURATION.fullmatch(text)
        if not text or match is None:
            raise ValueError("not a duration; write e.g. 45m, 1h30m, 90s or a number of seconds")
        hours, minutes, seconds_part = (float(group) if group else 0.0 for group in match.groups())
        seconds = hours * 3600 + minutes * 60 + seconds_part
    if seconds <= 0:
        raise ValueError("a duration must be more than 0 seconds")
    return seconds


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def describe_duration(seconds: float) -> str:
    """'1 h 40 min', '3 min 20 s', '25 s': to the minute past an hour, to the second below."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    return f"{seconds} s"
