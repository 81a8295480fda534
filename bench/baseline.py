"""The script a data engineer would write by hand: the baseline every prepare figure is compared with.

pandas reads the whole file, a Python loop normalises, validates and hashes each email with hashlib, a set
drops duplicates, and every batch of 100,000 is serialised with json.dumps, the way it would be POSTed.
It does less than the pipeline (no rejects file, no manifest, no digests), so the ratio is conservative.

    python -m bench.baseline FILE [COLUMN]     # prints one JSON line of counts
"""

from __future__ import annotations

import hashlib
import json
import sys

import pandas as pd

from bench.rules import BATCH_SIZE, EMAIL


def main(path: str, column: str = "Email Address") -> dict[str, int]:
    if path.endswith(".parquet"):
        emails = pd.read_parquet(path, columns=[column])[column]
    else:
        emails = pd.read_csv(path, usecols=[column], dtype=str, keep_default_na=False)[column]
    rows = rejected = duplicates = batches = body_bytes = 0
    seen: set[str] = set()
    batch: list[str] = []
    for raw in emails:
        rows += 1
        email = "".join(str(raw).split()).lower() if raw is not None else ""
        if len(email) > 254 or not EMAIL.fullmatch(email):
            rejected += 1
            continue
        digest = hashlib.sha256(email.encode("utf-8")).hexdigest()
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        batch.append(digest)
        if len(batch) == BATCH_SIZE:
            body_bytes += len(json.dumps({"accountId": "123456789", "action": "include", "sha256s": batch}))
            batches += 1
            batch = []
    if batch:
        body_bytes += len(json.dumps({"accountId": "123456789", "action": "include", "sha256s": batch}))
        batches += 1
    return {"rows": rows, "rejected": rejected, "duplicates": duplicates, "identifiers": len(seen),
            "batches": batches, "body_bytes": body_bytes}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
