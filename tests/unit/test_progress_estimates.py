"""The totals a run shows before the whole source is read are scaled from the rows read so far."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.progress import Tracker


@dataclass
class _Counts:
    complete: bool = False
    identifiers: int = 0
    lines_read: int = 0
    lines_total: int | None = None
    rows_flagged: int = 0
    duplicates_dropped: int = 0
    batches_total: int | None = None


def _done(tracker: Tracker, batches: int, records: int) -> None:
    for _ in range(batches):
        tracker.batch_done({"records": records})


def test_nothing_is_estimated_before_the_first_pass_has_counted_the_rows() -> None:
    tracker = Tracker()
    tracker.start(_Counts(identifiers=900, lines_read=1_000), batch_size=100, skipped=0)
    _done(tracker, 2, 100)
    snapshot = tracker.snapshot()
    assert snapshot.identifiers_total is None and snapshot.batches_total is None and snapshot.seconds_left is None
    assert snapshot.describe_totals() == "2 batches"


def test_totals_are_scaled_from_the_share_of_rows_read_then_exact() -> None:
    counts = _Counts(identifiers=900, lines_read=1_000, lines_total=3_000, rows_flagged=40, duplicates_dropped=60)
    tracker = Tracker()
    tracker.start(counts, batch_size=100, skipped=3)  # 3 batches accepted before a resume count as done
    _done(tracker, 2, 100)
    snapshot = tracker.snapshot()
    assert (snapshot.identifiers_total, snapshot.batches_total, snapshot.estimated) == (2_700, 27, True)
    assert snapshot.describe_totals().startswith("5 of ~27 batches, about ")
    assert snapshot.describe_quality() == "40 rejected, 60 duplicates so far"
    counts.complete, counts.identifiers = True, 2_650
    snapshot = tracker.snapshot()
    assert (snapshot.identifiers_total, snapshot.batches_total, snapshot.estimated) == (2_650, 27, False)


def test_a_finished_run_shows_no_time_left_and_one_duplicate_is_singular() -> None:
    tracker = Tracker()
    tracker.start(_Counts(complete=True, identifiers=150, duplicates_dropped=1), batch_size=100, skipped=0)
    _done(tracker, 2, 75)
    snapshot = tracker.snapshot()
    assert snapshot.describe_totals() == "2 of 2 batches" and snapshot.describe_quality().endswith("1 duplicate so far")


def test_time_left_follows_the_pace_since_the_first_answer_not_the_start() -> None:
    now = [100.0]
    tracker = Tracker(clock=lambda: now[0])
    tracker.start(_Counts(complete=True, identifiers=1_000), batch_size=100, skipped=0)
    now[0] += 5.0  # reading the source and the first request: not the pace of the rest
    tracker.batch_done({"records": 100})
    assert tracker.snapshot().seconds_left is None  # one answer is no pace yet
    for _ in range(4):
        now[0] += 0.25
        tracker.batch_done({"records": 100})
    assert tracker.snapshot().seconds_left == 5 * 0.25  # 5 of 10 done, a quarter of a second each


def test_the_batches_cut_are_the_total_when_known() -> None:
    # A mirror sync sends its adds and its removes in batches of their own: 150 + 150 identifiers are 4 batches.
    tracker = Tracker()
    tracker.start(_Counts(complete=True, identifiers=300, batches_total=4), batch_size=100, skipped=0)
    _done(tracker, 1, 100)
    assert tracker.snapshot().describe_totals() == "1 of 4 batches"
