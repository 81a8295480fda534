"""Deterministic batches, digests, and per-row validation reasons."""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl

from pipeline.batching import batch_digest, iter_batches
from pipeline.prepare.normalise import normalise_email, strip_hash
from pipeline.prepare.schemas import failing_rows


def test_batches_are_exact_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "unique.parquet"
    pl.DataFrame({"wire": [f"id{i:05d}" for i in range(25_001)]}).write_parquet(path, row_group_size=3_000)
    first = list(iter_batches(path, 10_000))
    second = list(iter_batches(path, 10_000))
    assert [b.records for b in first] == [10_000, 10_000, 5_001]
    assert [b.index for b in first] == [0, 1, 2]
    assert [b.digest for b in first] == [b.digest for b in second]
    assert [i for b in first for i in b.identifiers] == [f"id{i:05d}" for i in range(25_001)]


def test_digest_is_of_the_identifiers_in_the_order_sent() -> None:
    assert batch_digest(["a", "b"]) == hashlib.sha256(b"a\nb").hexdigest()
    assert batch_digest(["b", "a"]) != batch_digest(["a", "b"])
    assert batch_digest(["a", "b"]) != batch_digest(["a", "c"])


def test_each_invalid_row_gets_one_reason() -> None:
    raw = pl.DataFrame(
        {"email": ["ok@example.com", "", None, "no-at-sign", "a@b", "x\x00@y.com", "a" * 250 + "@example.com", "Fine@Example.Com "]},
        schema={"email": pl.String},
    )
    failures = failing_rows(raw.select(normalise_email("email")), ["email"])
    reasons = dict(zip(failures["position"].to_list(), failures["reason"].to_list()))
    assert reasons == {
        1: "empty",
        2: "empty",
        3: "email has no @",
        4: "email domain has no dot",
        5: "email contains control characters",
        6: "email longer than 254 bytes",
    }


def test_hash_shapes() -> None:
    tampered = "F1O9s2gnGnhYh92/uSYWTy98aoj2CcB/8EAcVXKVUgZ="  # unused bits set: not a canonical digest
    raw = pl.DataFrame({"sha256": ["a" * 64, "A" * 64, "b" * 42 + "c=", "a" * 63, "z" * 64, "", tampered]})
    failures = failing_rows(raw.select(strip_hash("sha256")), ["sha256"])
    assert failures["position"].to_list() == [3, 4, 5, 6]
