"""On every suppression export: exclude the exported people from the audience (jobs/suppression_on_export.yaml).

The export DAG (an outlet on SUPPRESSION_EXPORT) or any producer through the REST API
(POST /api/v2/assets/events) triggers it with extra {"source_uri": "<the exact key it wrote>"}.
"""

from airflow.sdk import Asset

from rokt_airflow import rokt_dag

SUPPRESSION_EXPORT = Asset(name="rokt_suppression_export", uri="s3://warehouse-exports/rokt/suppression/")

rokt_dag(
    "rokt_suppression_on_export",
    "jobs/suppression_on_export.yaml",
    endpoint="audience_import",
    account_id="123456789",
    schedule=SUPPRESSION_EXPORT,
    pool_slots=2,  # the other half of the account's audience budget
    tags=["suppression"],
    doc_md=__doc__,
)
