"""One factory that turns a rokt-pipeline job file into an Airflow DAG (Airflow 3, TaskFlow).

Parse time stays cheap and inert: this module imports only `airflow.sdk` (and reads the executor setting from
Airflow's configuration, already loaded), reads no file, opens no connection and looks up no variable. The job
file, the connection, Variables and the library (`pipeline`, polars, ...) are touched only inside the tasks, at
run time (see `rokt_airflow.tasks`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, TriggerRule, dag, task

DAGS_FOLDER = Path(__file__).parent.parent

# The budget one pool stands for, per endpoint family and account: (requests in flight, requests per second).
# Audience import: Rokt's documented limits. The others: the library's conservative defaults (not documented).
# A pool has as many slots as the budget has requests in flight; a task that takes k slots may use k/slots of
# the budget, so the tasks running at once in one pool never add up to more than the budget.
BUDGETS: dict[str, tuple[int, float]] = {
    "audience_import": (4, 4.0),
    "audience_import_legacy": (4, 4.0),
    "data_deletion": (1, 1.0),
    "nurture_unsubscribe": (8, 50.0),
}

# Job-file variable -> field of the Airflow connection it is read from ("login", "password" or "extra.<key>").
AUDIENCE_CREDENTIALS = {"ROKT_PUBLIC_KEY": "login", "ROKT_SECRET_KEY": "password"}
LEGACY_CREDENTIALS = {"ROKT_API_KEY": "password"}
DELETION_CREDENTIALS = {"ROKT_APP_ID": "login", "ROKT_APP_SECRET": "password"}


def pool_name(endpoint: str, account_id: str) -> str:
    """`rokt_<endpoint family>_<account id>`: one pool per rate-limit budget."""
    return "rokt_" + re.sub(r"[^A-Za-z0-9_]", "_", f"{endpoint}_{account_id}")


# Executors whose tasks all run on the scheduler's machine: a local output folder is the same for every try.
LOCAL_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})


def executors() -> list[str]:
    """The deployment's executors (Airflow 3 allows several), from its configuration: cheap, no I/O of our own."""
    try:
        from airflow.configuration import conf

        configured = conf.get("core", "executor", fallback="LocalExecutor")
    except Exception:  # noqa: BLE001 (a parse must never fail on this)
        configured = os.environ.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    return [name.strip().rsplit(".", 1)[-1] for name in configured.split(",") if name.strip()]


def _output_warning(overrides: Mapping[str, Any], output_is_shared: bool) -> str:
    """A paragraph for the DAG's docs when its outputs may land on one worker's disk while tasks run on many."""
    remote = [name for name in executors() if name not in LOCAL_EXECUTORS]
    output = str(overrides.get("output.uri", ""))
    if not remote or output_is_shared or output.startswith("s3://"):
        return ""
    return (f"\n\n**Outputs:** this deployment runs tasks on {', '.join(remote)}: the job's `output.uri` must be "
            "shared by every worker (`s3://…`), or a retry on another worker finds no ledger and sends everything "
            "again. A local folder is refused when the task starts, before anything is sent; set "
            "`overrides={\"output.uri\": \"{{ var.value.rokt_output_uri }}\"}`, or `output_is_shared=True` for a "
            "folder every worker mounts.")


def rokt_dag(
    dag_id: str,
    job_file: str | Path,
    *,
    endpoint: str,
    account_id: str,
    schedule: Any = None,
    conn_id: str = "rokt_default",
    credentials: Mapping[str, str] = AUDIENCE_CREDENTIALS,
    pool_slots: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    sync_deletions: bool = False,
    output_is_shared: bool = False,
    owner: str = "data-platform",
    tags: Sequence[str] = (),
    retries: int = 3,
    retry_delay: timedelta = timedelta(minutes=5),
    start_date: datetime = datetime(2025, 1, 1, tzinfo=timezone.utc),
    doc_md: str | None = None,
    **dag_kwargs: Any,
) -> DAG:
    """Build the DAG for one job file.

    job_file      a rokt-pipeline job file; relative paths are relative to the dags folder. Read at run time.
    endpoint, account_id
                  the job's endpoint family and account: they name the pool (checked against the job file
                  at run time, so a wrong pool cannot go unnoticed).
    schedule      a cron string / timedelta, or an Asset (or list of Assets): then every triggering asset
                  event's extra `source_uri` is sent as its own mapped task (`source.uri` override).
    conn_id       the Airflow connection holding the credentials (and, in its host, the API base URL).
    credentials   job-file ${VAR} -> connection field; the values reach the library as its `environment`.
    pool_slots    this DAG's share of the pool (default: all of it, so it runs alone at the full budget).
    overrides     dotted job keys set at run time; values are Jinja templates: a dated input
                  ("{{ ds }}"), an Airflow Variable ("{{ var.value.rokt_output_uri }}") or a DAG param
                  ("{{ params.source_uri }}"). `job_file` may be a template too.
    output_is_shared
                  the job's local output folder is one every worker mounts (otherwise, under a remote
                  executor, a local output.uri fails the task before anything is sent).
    sync_deletions
                  add a task that follows every open deletion run of the job until each of its tasks is
                  ACTIONED or CANCELLED (data_deletion jobs).
    """
    if endpoint not in BUDGETS:
        raise ValueError(f"{dag_id}: unknown endpoint family {endpoint!r}; expected one of {sorted(BUDGETS)}")
    pool_size = BUDGETS[endpoint][0]
    slots = pool_size if pool_slots is None else pool_slots
    if not 1 <= slots <= pool_size:
        raise ValueError(f"{dag_id}: pool_slots must be between 1 and {pool_size} (the {endpoint} pool's size)")
    settings = {
        "endpoint": endpoint,
        "account_id": account_id,
        "conn_id": conn_id,
        "credentials": dict(credentials),
        "pool_slots": slots,
        "pool_size": pool_size,
        "output_is_shared": output_is_shared,
    }
    job_file = str(job_file)  # templated at run time, like the overrides; relative to the dags folder
    triggered_by_asset = isinstance(schedule, Asset) or (
        isinstance(schedule, (list, tuple)) and bool(schedule) and all(isinstance(s, Asset) for s in schedule)
    )
    send_options = {"pool": pool_name(endpoint, account_id), "pool_slots": slots}

    @dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=start_date,
        catchup=False,
        max_active_runs=1,
        tags=["rokt", endpoint, *tags],
        doc_md=(doc_md or __doc__) + _output_warning(overrides or {}, output_is_shared),
        default_args={"owner": owner, "retries": retries, "retry_delay": retry_delay},
        **dag_kwargs,
    )
    def build() -> None:
        # One XCom value (the summary), not one row per field: a `dict` return would otherwise be split up.
        # Exported files are sent one at a time, in the order they were exported.
        @task(**send_options, multiple_outputs=False, max_active_tis_per_dagrun=1)
        def send(job_file: str, overrides: dict[str, Any] | None = None, source_uri: str | None = None) -> dict[str, Any]:
            """Run the job (resuming under this DAG run's id) and return its summary."""
            from rokt_airflow.tasks import send_job

            return send_job({**settings, "job_file": job_file}, overrides or {}, source_uri)

        if triggered_by_asset:
            @task
            def source_uris() -> list[str]:
                """The `source_uri` of every asset event that triggered this run (or the run conf's), oldest first."""
                from rokt_airflow.tasks import triggering_source_uris

                return triggering_source_uris()

            sent = send.partial(job_file=job_file, overrides=dict(overrides or {})).expand(source_uri=source_uris())
        else:
            sent = send(job_file=job_file, overrides=dict(overrides or {}))

        if sync_deletions:
            @task(**send_options, trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
            def sync_open_deletion_runs(job_file: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
                """Follow every open deletion run of this job: run `deletions sync` until all tasks are final."""
                from rokt_airflow.tasks import sync_deletion_runs

                return sync_deletion_runs({**settings, "job_file": job_file}, overrides or {})

            sent >> sync_open_deletion_runs(job_file=job_file, overrides=dict(overrides or {}))

    return build()
