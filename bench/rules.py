"""What the hand-written baseline and the bare polars script both apply: the batch size and the email rule."""

import re

BATCH_SIZE = 100_000
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
