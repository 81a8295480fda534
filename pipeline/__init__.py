"""rokt-pipeline: deliver customer and suppression files into Rokt's APIs, with an audit trail.

Public API: `load_job(path) -> JobConfig`, `run_job(job, ...) -> RunSummary`.
"""

__version__ = "0.1.0"

from pipeline.config import JobConfig, load_job  # noqa: E402
from pipeline.runner import RunSummary, run_job  # noqa: E402

__all__ = ["JobConfig", "RunSummary", "load_job", "run_job", "__version__"]
