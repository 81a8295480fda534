"""incremental and mirror sync: send only what changed since the last accepted run (see plan.py)."""

from pipeline.sync.plan import SyncPlan, plan_sync

__all__ = ["SyncPlan", "plan_sync"]
