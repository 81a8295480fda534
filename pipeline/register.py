"""The delivery register: which run delivered which export to which destination, whatever its run id.

Resume by run id makes one run safe; the register makes the export safe. A manual trigger, a duplicate Airflow run
or a rerun of yesterday's command reads the same export under a new run id: the register says it was already
delivered (nothing is sent), or that an earlier run delivered part of it (that run's ledger is resumed, so nothing
accepted goes twice). `--force` sends it again, on purpose.

"The same export" is the same files, each with the same size and version (ETag on S3, modification time on disk),
as the run's `source_fingerprint` says; "the same destination" is the same `target` (endpoint, URL, account, list,
action). One small JSON object per pair, under `<output.uri>/<job>/_register/`, next to the runs: local or S3, like
them. It holds run ids, times and counts, never an identifier, and says only what a run's ledger says: a run is
registered as sending before its first request, and as delivered or partial from its summary, which is counted
from its ledger. A run killed in between stays "sending", which the next run treats as partial.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from pipeline.ledger import utc_now, write_json
from pipeline.storage import Store

log = logging.getLogger(__name__)

REGISTER = "_register"
SENDING, DELIVERED, PARTIAL = "sending", "delivered", "partial"


@dataclass(frozen=True)
class Registration:
    run_id: str
    state: str  # sending | delivered | partial
    started_at: str
    updated_at: str

    @property
    def delivered(self) -> bool:
        return self.state == DELIVERED


class DeliveryRegister:
    """One export (its source fingerprint) to one destination (its target), in one job's outputs."""

    def __init__(self, job_store: Store, target: str, fingerprint: str):
        self._store = job_store
        self._name = f"{REGISTER}/{target}/{fingerprint}.json"

    def earlier(self) -> Registration | None:
        data = self._store.read_bytes(self._name)
        if data is None:
            return None
        try:
            entry = json.loads(data)
            return Registration(entry["run_id"], entry["state"], entry["started_at"], entry["updated_at"])
        except (ValueError, KeyError, TypeError):  # a torn write: as if no run had registered
            log.warning("ignored an unreadable delivery register entry %s/%s", self._store.uri, self._name)
            return None

    def sending(self, run_id: str, destination: dict[str, Any]) -> None:
        """Written before the run's first request: a run killed after it is found by the next one."""
        earlier = self.earlier()
        started = earlier.started_at if earlier is not None and earlier.run_id == run_id else utc_now()
        self._write(run_id, SENDING, started, destination)

    def finished(self, run_id: str, delivered: bool, destination: dict[str, Any], counts: dict[str, Any]) -> None:
        earlier = self.earlier()
        started = earlier.started_at if earlier is not None and earlier.run_id == run_id else utc_now()
        self._write(run_id, DELIVERED if delivered else PARTIAL, started, destination, counts)

    def _write(self, run_id: str, state: str, started_at: str, destination: dict[str, Any],
               counts: dict[str, Any] | None = None) -> None:
        write_json(self._store, self._name, {"run_id": run_id, "state": state, "started_at": started_at,
                                             "updated_at": utc_now(), "destination": destination, **(counts or {})})
