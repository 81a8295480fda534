"""`rokt-pipeline lookup`: was this person sent to Rokt, when, where, and what id came back?

The address (or phone, or hash) given is normalised, validated and hashed exactly as a run does it, with the same
polars expressions; only its SHA-256 is looked for, and only that is ever printed. For a one-subject job the manifest
keys each request by that digest; for a batch job each run's delivery index says which batch the digest went in, and
the manifest says what became of that batch.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipeline.audit.index import INDEX, batches_of
from pipeline.audit.runs import latest_per_request
from pipeline.storage import Store
from pipeline.config import JobOutputs, describe_destination
from pipeline.endpoints.registry import endpoint_class
from pipeline.errors import ConfigError
from pipeline.ledger import PLAN, read_json, read_records
from pipeline.outputs import run_ids, run_store
from pipeline.prepare.hashing import prehashed_to_hex, sha256_hex
from pipeline.prepare.normalise import normalise_email, normalise_phone, strip_hash
from pipeline.prepare.schemas import failing_rows


@dataclass(frozen=True)
class Subject:
    """The digest a run would have sent (or keyed) for what was asked, or why a run would have rejected it."""

    kind: str  # email | sha256 | phone
    digest: str | None  # hex SHA-256 of the normalised identifier
    rejected_because: str | None = None

    @property
    def shown(self) -> str:
        """How the subject is named in every message: its digest, shortened; never the address."""
        return f"sha256 {self.digest[:8]}…{self.digest[-4:]}" if self.digest else f"this {self.kind}"


@dataclass
class Finding:
    run_id: str
    endpoint: str
    destination: str
    status: str
    at: str | None
    batch: int | None = None
    request_type: str | None = None
    ids: dict[str, Any] = field(default_factory=dict)
    ambiguous: bool = False
    dry_run: bool = False


def subject_of(outputs: JobOutputs, email: str | None, sha256: str | None, phone: str | None) -> Subject:
    given = {kind: value for kind, value in (("email", email), ("sha256", sha256), ("phone", phone)) if value is not None}
    if len(given) != 1:
        raise ConfigError("lookup: give one of --email, --sha256 or --phone")
    ((kind, value),) = given.items()
    if kind == "phone" and outputs.endpoint != "network_privacy":
        raise ConfigError(f"lookup --phone: {outputs.endpoint} jobs send no phones; look up by --email or --sha256")
    normalise = {"email": normalise_email, "sha256": strip_hash,
                 "phone": lambda role: normalise_phone(role, outputs.default_phone_region)}[kind]
    frame = pl.DataFrame({kind: [value]}, schema={kind: pl.String}).select(normalise(kind).alias(kind))
    frame = frame.with_columns(pl.when(pl.col(kind).str.len_bytes() > 0).then(pl.col(kind)))  # as a run: empty is null
    failures = failing_rows(frame, [kind])
    if failures.height:
        if kind == "sha256":
            raise ConfigError("lookup --sha256: not a SHA-256 (64 hex characters, or a 44-character base64 digest)")
        return Subject(kind, None, str(failures["reason"][0]))
    digest = prehashed_to_hex(pl.col(kind)) if kind == "sha256" else sha256_hex(pl.col(kind))
    return Subject(kind, frame.select(digest).item())


def lookup(outputs: JobOutputs, subject: Subject, run_id: str | None = None) -> list[Finding]:
    """Every request of the job's runs (or of `run_id`) that carried the subject, oldest run first."""
    if subject.digest is None:
        return []
    findings: list[Finding] = []
    for run in [run_id] if run_id else run_ids(outputs):
        store = run_store(outputs, run)
        plan = read_json(store, PLAN) or {}
        records, _ = read_records(store)
        if endpoint_class(outputs.endpoint).one_subject:
            outcomes = [r for r in records if "status" in r and r.get("subject") == subject.digest]
        else:
            batches = set(_indexed_batches(store, subject.digest))
            outcomes = [r for r in records if "status" in r and r.get("batch") in batches]
        latest = latest_per_request(outcomes, lambda r: (r.get("batch"), r.get("request_type"), r.get("target")))
        findings += [_finding(run, record, plan) for record in latest.values()]
    return findings


def _indexed_batches(store: Store, digest: str) -> list[int]:
    with tempfile.TemporaryDirectory(prefix="rokt-lookup-") as scratch:  # an S3 run: the index is read from a copy
        index = store.local_copy(INDEX, Path(scratch))
        # None: a one-subject run, or one stopped before its index was whole.
        return [] if index is None else batches_of(index, digest)


def _finding(run_id: str, record: dict[str, Any], plan: dict[str, Any]) -> Finding:
    destination = plan.get("destination")
    return Finding(
        run_id=run_id, endpoint=record.get("endpoint", ""),
        destination=describe_destination(destination) if destination else f"target {record.get('target')}",
        status=record["status"], at=record.get("finished_at"),
        batch=None if record.get("subject") else record.get("batch"), request_type=record.get("request_type"),
        ids=dict(record.get("ids") or {}), ambiguous=bool(record.get("ambiguous")), dry_run=record["status"] == "dry_run",
    )
