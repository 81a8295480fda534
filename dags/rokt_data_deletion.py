"""Daily: submit the day's deletion requests, then follow every open deletion run until each task is
ACTIONED or CANCELLED (jobs/data_deletion.yaml; connection `rokt_deletion`: login = app id, password = secret)."""

from rokt_airflow import DELETION_CREDENTIALS, rokt_dag

rokt_dag(
    "rokt_data_deletion",
    "jobs/data_deletion.yaml",
    endpoint="data_deletion",
    account_id="2456192011195196284677",
    schedule="0 7 * * *",
    conn_id="rokt_deletion",
    credentials=DELETION_CREDENTIALS,
    sync_deletions=True,
    # The export of the run's own date: a backfill of a past day sends that day's file, not today's.
    # (A manual run has no logical date in Airflow 3: it reads the day it was triggered.)
    overrides={"source.uri": "${ROKT_EXPORT_DIR}/{{ (logical_date or dag_run.run_after) | ds }}/deletion_requests.csv"},
    tags=["privacy"],
    doc_md=__doc__,
)
