"""What the hand-written baseline and its polars version (polars_by_hand.py) both apply: batch size, email rule."""

import re

BATCH_SIZE = 100_000
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
