"""Which planned batches the ledger shows accepted, or refused for good: the only things that move a state.

A ledger line is matched to a planned batch by its digest (the batch's exact identifiers), and by its action
when the plan has one (mirror), never by batch number alone: lines from an earlier attempt of the same run
id over a different file cannot be mistaken for this plan's batches.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import polars as pl

from pipeline.sync.diff import ACCEPTED, REFUSED

# The API refused the content itself: sending the same identifiers again cannot succeed. Other refusals
# (401/403 credentials, 413 batch size) are about the request, so the batch is tried again next run.
PERMANENT_REJECTIONS = frozenset({400, 422})

Counts = Callable[[dict[str, Any]], bool]


def batch_outcomes(records: Iterable[dict[str, Any]], batches: pl.DataFrame, counts: Counts) -> pl.DataFrame:
    """batch, outcome (accepted | rejected) for each planned batch the ledger settles; others are absent."""
    by_action: dict[tuple[str, str | None], str] = {}
    by_digest: dict[str, str] = {}
    for record in records:
        if "batch" not in record or "digest" not in record:
            continue
        status = record.get("status")
        if status == "accepted" and counts(record):
            verdict = ACCEPTED
        elif status == "rejected" and record.get("http_status") in PERMANENT_REJECTIONS:
            verdict = REFUSED
        else:
            continue
        for verdicts, key in ((by_action, (record["digest"], record.get("action"))), (by_digest, record["digest"])):
            if verdicts.get(key) != ACCEPTED:  # once accepted (e.g. on a resume after a refusal), it stays accepted
                verdicts[key] = verdict  # type: ignore[index]
    rows = []
    for batch, digest, action in batches.select("batch", "digest", "action").iter_rows():
        outcome = by_digest.get(digest) if action is None else by_action.get((digest, action))
        if outcome is not None:
            rows.append((batch, outcome))
    return pl.DataFrame(rows, schema={"batch": pl.UInt32, "outcome": pl.String}, orient="row")
