"""Daily: add the customer export to the US_Customers audience (jobs/audience_daily.yaml)."""

from rokt_airflow import rokt_dag

rokt_dag(
    "rokt_audience_daily",
    "jobs/audience_daily.yaml",
    endpoint="audience_import",
    account_id="123456789",
    schedule="0 6 * * *",
    pool_slots=2,  # half of the account's audience budget: the suppression DAG may run at the same time
    # The export of the run's own date: a backfill of a past day sends that day's file, not today's.
    # (A manual run has no logical date in Airflow 3: it reads the day it was triggered.)
    overrides={"source.uri": "${ROKT_EXPORT_DIR}/{{ (logical_date or dag_run.run_after) | ds }}/customers.csv"},
    tags=["audience"],
    doc_md=__doc__,
)
