"""rokt-pipeline: deliver customer and suppression files into Rokt's APIs, with an audit trail.

Public API: `load_job(path) -> JobConfig`, `run_job(job, ...) -> RunSummary`.
"""

import os

from pipeline.version import __version__

# Bound polars' read-ahead: the runner consumes chunks only as fast as it sends them, and polars' readers do
# not feel that back-pressure. Measured (bench/): the CSV reader's working set drops from 361 to 148 MB and the
# Parquet reader's from 323 to 138 MB, with no slowdown. A user's own setting wins; polars reads it per query.
# The streaming engine holds a number of chunks in flight, whatever their size: 1 MiB chunks, not 4 MiB, took the
# 10M-row CSV dry run's peak RSS from 522 to 427 MiB (medians of five) in the same 5.3 s; 512 KiB was slower.
os.environ.setdefault("POLARS_CSV_CHUNK_SIZE", "1048576")
os.environ.setdefault("POLARS_ROW_GROUP_PREFETCH_SIZE", "1")
# polars' allocator (jemalloc) keeps freed pages for 0.5 s and then as "muzzy" (MADV_FREE) pages for another
# second, which count in RSS until the kernel needs them. Released 250 ms after they are freed instead (medians of
# five, alternated): 10M-row CSV dry run 440 -> 402 MiB, 5M 469 -> 402 MiB, 1M 337 -> 318 MiB, at 4% more CPU
# (5.31 -> 5.55 s at 10M rows). jemalloc reads this once, when polars is first imported (so only if nothing
# imported it before us); polars puts its own defaults in front, and jemalloc takes the last value of each option.
_POLARS_ALLOCATOR_DEFAULTS = "dirty_decay_ms:500,muzzy_decay_ms:1000"


def _allocator_setting(inherited: str) -> str:
    """A user's own setting, else ours. A parent process that imported polars (a scheduler, the benchmark) passes
    polars' defaults on in the environment: those are nobody's choice."""
    users = inherited.removeprefix(_POLARS_ALLOCATOR_DEFAULTS).lstrip(",")
    return users or "dirty_decay_ms:250,muzzy_decay_ms:0"


os.environ["_RJEM_MALLOC_CONF"] = _allocator_setting(os.environ.get("_RJEM_MALLOC_CONF", ""))
# numpy's OpenBLAS starts a thread per core as numpy loads, and each spins for about 0.1 s waiting for work. The
# pipeline never calls BLAS (numpy only sorts and searches here), and that spin came just as the stream started,
# on cores polars was using: 0.09 CPU-s of a 1M-row dry run's 1.1. A user's own setting (or OMP_NUM_THREADS) wins.
# Like the settings above, it holds for the whole process (numpy loaded after `import pipeline`) and its children.
if "OMP_NUM_THREADS" not in os.environ:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from pipeline.config import JobConfig, load_job  # noqa: E402
from pipeline.runner import run_job  # noqa: E402
from pipeline.summary import RunSummary  # noqa: E402

__all__ = ["JobConfig", "RunSummary", "load_job", "run_job", "__version__"]
