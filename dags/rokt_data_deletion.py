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
    tags=["privacy"],
    doc_md=__doc__,
)
