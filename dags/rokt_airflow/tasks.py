"""What the tasks do at run time. Imported only inside a running task: the library and polars load here."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook, get_current_context
from airflow.sdk.exceptions import AirflowFailException
from airflow.sdk.log import mask_secret

log = logging.getLogger("rokt_airflow")



def ledger_run_id(airflow_run_id: str, source_uri: str | None = None) -> str:
    """Airflow's run id, as the ledger run id: the same on every retry of the task, so a retry resumes.

    A run that sends several exported files (one mapped task each) gets one ledger run per file.
    """
    run_id = airflow_run_id
    if source_uri is not None:
        run_id += "." + hashlib.sha256(source_uri.encode()).hexdigest()[:12]
    from pipeline.outputs import valid_run_id

    if valid_run_id(run_id):
        return run_id
    cleaned = re.sub(r"[^A-Za-z0-9._:+@=-]", "-", run_id).replace("..", ".").lstrip("._:+@=-")[:180]
    return f"{cleaned or 'run'}.{hashlib.sha256(run_id.encode()).hexdigest()[:12]}"


def connection_settings(conn_id: str, credentials: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The job-file variables read from the connection (masked in every task log) and its base URL, if any."""
    connection = BaseHook.get_connection(conn_id)
    variables: dict[str, str] = {}
    for name, field in credentials.items():
        if field.startswith("extra."):
            value = connection.extra_dejson.get(field.removeprefix("extra."))
        else:
            value = getattr(connection, field, None)
        if not value:
            raise AirflowFailException(f"connection {conn_id!r} has no {field}, which this job reads as ${{{name}}}")
        mask_secret(str(value))
        variables[name] = str(value)
    base_url = None
    if connection.host:
        base_url = connection.host if "://" in connection.host else f"{connection.schema or 'https'}://{connection.host}"
        if connection.port and "://" not in connection.host:
            base_url += f":{connection.port}"
    return variables, base_url


def load(settings: dict[str, Any], overrides: dict[str, Any]) -> Any:
    """The job, with the connection's credentials and base URL, and its limits cut to this task's pool share."""
    from pipeline import load_job
    from pipeline.errors import PipelineError
    from rokt_airflow import DAGS_FOLDER

    variables, base_url = connection_settings(settings["conn_id"], settings["credentials"])
    # The connection's values win over the process environment, which serves the other ${VAR}s (paths, ...).
    environment = {**os.environ, **variables}
    overrides = dict(overrides) | ({"destination.base_url": base_url} if base_url else {})
    job_file = Path(settings["job_file"])
    settings = {**settings, "job_file": str(job_file if job_file.is_absolute() else DAGS_FOLDER / job_file)}
    try:
        job = load_job(settings["job_file"], overrides=overrides, environment=environment)
        refuse_unshared_output(job, settings)
        destination = job.destination
        if destination.endpoint != settings["endpoint"]:
            raise AirflowFailException(
                f"{settings['job_file']} sends to {destination.endpoint}, but this DAG was declared for "
                f"{settings['endpoint']} (and uses that pool): fix the DAG's endpoint="
            )
        account = getattr(destination, "account_id", None)
        if account is not None and str(account) != str(settings["account_id"]):
            raise AirflowFailException(
                f"{settings['job_file']} sends for account {account}, but this DAG was declared for account "
                f"{settings['account_id']} (and uses that account's pool): fix the DAG's account_id="
            )
        share = shared_limits(destination.limits, settings)
        if share:
            job = load_job(settings["job_file"], overrides=overrides | share, environment=environment)
    except PipelineError as exc:  # config or input error: a retry cannot help
        raise AirflowFailException(str(exc)) from None
    return job


def refuse_unshared_output(job: Any, settings: dict[str, Any]) -> None:
    """Under an executor whose tries may run on other machines, a local output folder is refused before sending:
    a retry elsewhere would find no ledger there and send everything again."""
    from rokt_airflow import LOCAL_EXECUTORS, executors

    remote = [name for name in executors() if name not in LOCAL_EXECUTORS]
    if remote and not job.output.uri.startswith("s3://") and not settings.get("output_is_shared"):
        raise AirflowFailException(
            f"output.uri {job.output.uri} is a folder on this worker, but this Airflow runs tasks on {', '.join(remote)}: "
            "a retry on another worker would not find the ledger and would send everything again. Nothing was sent. "
            "Point output.uri at s3://… (e.g. overrides={'output.uri': '{{ var.value.rokt_output_uri }}'}), or pass "
            "output_is_shared=True to rokt_dag() if every worker mounts that folder")


def shared_limits(limits: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """Overrides that cut the job's limits to this task's share of the pool's budget (nothing if within it)."""
    from rokt_airflow import BUDGETS

    in_flight, per_second = BUDGETS[settings["endpoint"]]
    share = settings["pool_slots"] / settings["pool_size"]
    concurrency = max(1, min(limits.concurrency, int(in_flight * share)))
    rate = min(limits.per_second, per_second * share)
    changed: dict[str, Any] = {}
    if concurrency != limits.concurrency:
        changed["destination.limits.concurrency"] = concurrency
    if rate != limits.per_second:  # the share is set per second, whichever way the job file gave the rate
        changed |= {"destination.limits.requests_per_second": rate, "destination.limits.requests_per_minute": None}
    if changed:
        log.info(
            "pool share %d/%d slots: at most %d requests in flight and %.2f per second",
            settings["pool_slots"], settings["pool_size"], concurrency, rate,
        )
    return changed


def send_job(settings: dict[str, Any], overrides: dict[str, Any], source_uri: str | None) -> dict[str, Any]:
    from pipeline import run_job
    from pipeline.errors import PipelineError
    from pipeline.progress import LogProgress

    context = get_current_context()
    run_id = ledger_run_id(context["run_id"], source_uri)
    if source_uri is not None:
        overrides = overrides | {"source.uri": source_uri}
    job = load(settings, overrides)
    ti = context["ti"]
    log.info("job %s, ledger run id %s (attempt %s: batches already accepted under it are skipped)",
             job.job, run_id, ti.try_number)
    try:
        summary = run_job(job, run_id=run_id, progress=LogProgress())
    # A config or input error (nothing was sent: a retry cannot help), or answers the manifest could not store
    # (LedgerError: an automatic retry would send them again before someone copies the rescue file back).
    except PipelineError as exc:
        raise AirflowFailException(in_airflow_words(str(exc), settings["conn_id"])) from None
    manifest = summary.manifest
    log.info("manifest: %s", manifest)
    result = summary.to_dict() | {"ledger_run_id": run_id}
    if summary.exit_code:
        message = in_airflow_words(failure_message(summary, manifest, settings["job_file"]), settings["conn_id"])
        log.error("%s", message)
        if summary.stopped_reason and not summary.max_duration_reached:  # e.g. 401/403: every retry fails the same way
            raise AirflowFailException(message)
        raise RuntimeError(message)  # a retry (or the next run, for incremental jobs) carries on
    return result


def in_airflow_words(message: str, conn_id: str) -> str:
    """The library names the job file's keys; under Airflow the credentials come from a connection."""
    return message.replace("destination.credentials", f"the Airflow connection {conn_id!r} (its login and password)")


def failure_message(summary: Any, manifest: str, job_file: str) -> str:
    left = summary.identifiers_left
    statuses = ", ".join(f"{n} {status}" for status, n in sorted(summary.batches_by_status.items()))
    message = (
        f"{left:,} of {summary.identifiers:,} identifiers are not accepted yet (batches: {statuses}); "
        f"manifest: {manifest}. "
    )
    if summary.stopped_reason and not summary.max_duration_reached:
        return message + (f"The run stopped: {summary.stopped_reason}. Fix that, then clear this task: it resumes "
                          f"ledger run {summary.run_id} and skips every batch already accepted.")
    return message + (
        f"Airflow retries this task, and a retry resumes ledger run {summary.run_id}: batches already accepted "
        f"are skipped. After the last retry, clear this task to resume, or run "
        f"`rokt-pipeline run {job_file} --run-id {summary.run_id}`."
    )


def triggering_source_uris() -> list[str]:
    """Each triggering asset event's `source_uri` extra, in order, once; or the run conf's `source_uri`."""
    context = get_current_context()
    uris: list[str] = []
    # Oldest first: exports are sent in the order they were written (one at a time: max_active_tis_per_dagrun=1).
    events = sorted((event for events in context["triggering_asset_events"].values() for event in events),
                    key=lambda event: event.timestamp)
    for event in events:
        uri = (event.extra or {}).get("source_uri")
        if isinstance(uri, str) and uri and uri not in uris:
            uris.append(uri)
    conf = context["dag_run"].conf or {}
    if not uris and isinstance(conf.get("source_uri"), str):
        uris.append(conf["source_uri"])
    if not uris:
        raise AirflowFailException(
            'no source to send: the asset event that triggers this DAG must carry extra {"source_uri": '
            '"<the exact file or key the export wrote>"} (or trigger it with conf {"source_uri": ...})'
        )
    log.info("sending %d exported file(s): %s", len(uris), ", ".join(uris))
    return uris


def sync_deletion_runs(settings: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Run `deletions sync` over every run of the job whose deletion tasks are not all ACTIONED or CANCELLED."""
    from pipeline.deletions import open_runs, sync_runs

    job = load(settings, overrides)
    results = sync_runs(job, open_runs(job))  # one token and one listing, whatever the number of open runs
    for result in results:
        log.info("deletion run %s: %s tasks, %s still open, by status %s",
                 result["run_id"], result["tasks"], result["open"], result["by_status"])
    still_open = [r["run_id"] for r in results if r["open"]]
    log.info("%d deletion run(s) synced, %d still open: %s", len(results), len(still_open), ", ".join(still_open))
    return {"synced": results, "open_runs": still_open}
