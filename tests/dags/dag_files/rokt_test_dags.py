"""DAGs for the tests: one built by the shipped factory (small batches, fast task retries, a downstream task
that reads the manifest), and a stand-in for the warehouse export that announces the suppression asset with
the exact file it wrote."""

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import Asset, dag, task

from rokt_airflow import rokt_dag

small_batches = rokt_dag(
    "rokt_test_small_batches",
    Path(__file__).parent / "jobs" / "small_batches.yaml",
    endpoint="audience_import",
    account_id="123456789",
    pool_slots=2,
    retries=2,
    retry_delay=timedelta(seconds=1),
    tags=["test"],
)

with small_batches:  # a downstream task, as a deployment adds one: it gets the run summary (XCom)

    @task
    def load_manifest(summary: dict) -> int:
        """Stands in for loading the manifest into the warehouse."""
        with open(summary["manifest"], encoding="utf-8") as manifest:
            return sum(1 for _ in manifest)

    load_manifest(small_batches.get_task("send").output)

SUPPRESSION_EXPORT = Asset(name="rokt_suppression_export", uri="s3://warehouse-exports/rokt/suppression/")


@dag(schedule=None, start_date=datetime(2025, 1, 1, tzinfo=timezone.utc), catchup=False, tags=["test"],
     default_args={"owner": "warehouse"})
def warehouse_suppression_export():
    @task(outlets=[SUPPRESSION_EXPORT])
    def export(**context):
        conf = context["dag_run"].conf
        shutil.copyfile(conf["from"], conf["to"])  # the "export"
        context["outlet_events"][SUPPRESSION_EXPORT].extra = {"source_uri": conf["to"]}

    export()


warehouse_suppression_export()
