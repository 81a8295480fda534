"""Daily: add the customer export to the US_Customers audience (jobs/audience_daily.yaml)."""

from rokt_airflow import rokt_dag

rokt_dag(
    "rokt_audience_daily",
    "jobs/audience_daily.yaml",
    endpoint="audience_import",
    account_id="123456789",
    schedule="0 6 * * *",
    pool_slots=2,  # half of the account's audience budget: the suppression DAG may run at the same time
    tags=["audience"],
    doc_md=__doc__,
)
