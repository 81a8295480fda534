"""Where a job's outputs live: `<output.uri>/<job>/<run_id>/`, in a local folder or under an S3 prefix.

The runner writes there, and `status`, `deletions` and the sync state read there; this module is what they share,
so none of them imports another for it.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone
from pathlib import Path

from pipeline.config import JobConfig, OutputConfig
from pipeline.storage import LocalStore, S3Store, Store, is_s3, split_s3_uri

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+@=-]{0,199}$")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def valid_run_id(run_id: str) -> bool:
    """What the ledger accepts as a run id (it names a folder or an S3 prefix)."""
    return bool(_RUN_ID.match(run_id)) and ".." not in run_id


def store_at(uri: str, output: OutputConfig) -> Store:
    """A folder or an s3:// prefix, written as the job's outputs are (its S3 client settings and encryption)."""
    if is_s3(uri):
        from pipeline.s3 import put_args, s3_client

        bucket, prefix = split_s3_uri(uri)
        return S3Store(bucket, prefix.strip("/"), s3_client(output.s3), put_args(output))
    return LocalStore(Path(uri))


def job_store(job: JobConfig) -> Store:
    """<output.uri>/<job>/: every run of the job, local or S3."""
    return store_at(job.output.uri, job.output).child(job.job)


def run_store(job: JobConfig, run_id: str) -> Store:
    """Where this run's manifest, summary and rejects live: <output.uri>/<job>/<run_id>/."""
    return job_store(job).child(run_id)


def run_ids(job: JobConfig) -> list[str]:
    """Every run id with outputs under the job's folder."""
    return sorted({name.split("/", 1)[0] for name in job_store(job).list() if "/" in name and not name.startswith("_")})
