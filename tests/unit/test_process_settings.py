"""`import pipeline` tunes polars' CSV reader and allocator, and numpy's OpenBLAS, through the environment. polars
reads the chunk size per query, but jemalloc and OpenBLAS read theirs once, when they load: they take effect only
if the pipeline sets them before anything imports polars or numpy."""

import os
import subprocess
import sys

_OURS = ("POLARS_CSV_CHUNK_SIZE", "_RJEM_MALLOC_CONF", "OPENBLAS_NUM_THREADS")
_THREADS = "threads"


def _without_ours() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in (*_OURS, "OMP_NUM_THREADS")}


def _settings_after_import(**preset: str) -> dict[str, str]:
    environment = _without_ours() | preset
    shown = "; ".join(f"print(os.environ.get({name!r}))" for name in _OURS)
    lines = subprocess.run(
        [sys.executable, "-c", f"import os, pipeline, polars, numpy; {shown}; print(len(os.listdir('/proc/self/task')))"],
        env=environment, capture_output=True, text=True, check=True).stdout.splitlines()
    return dict(zip((*_OURS, _THREADS), lines))


def test_the_allocator_setting_is_in_place_before_polars_loads() -> None:
    settings = _settings_after_import()
    assert settings["POLARS_CSV_CHUNK_SIZE"] == "1048576"
    allocator = settings["_RJEM_MALLOC_CONF"]
    # polars puts its own defaults first when it loads after us; jemalloc takes the last value of each option.
    assert allocator.endswith(",dirty_decay_ms:250,muzzy_decay_ms:0")
    assert allocator.startswith("dirty_decay_ms:") and allocator.count("muzzy_decay_ms") == 2


def test_numpy_starts_no_blas_threads() -> None:
    # OpenBLAS reads its thread count as numpy loads: set any later, its threads would already be running.
    settings = _settings_after_import()
    assert settings["OPENBLAS_NUM_THREADS"] == "1"
    assert settings[_THREADS] == _settings_after_import(OPENBLAS_NUM_THREADS="1")[_THREADS]
    if (os.cpu_count() or 1) > 1:  # the count tells: with two threads allowed, OpenBLAS starts one of its own
        assert int(settings[_THREADS]) < int(_settings_after_import(OPENBLAS_NUM_THREADS="2")[_THREADS])


def test_a_users_own_settings_win() -> None:
    settings = _settings_after_import(POLARS_CSV_CHUNK_SIZE="8388608", _RJEM_MALLOC_CONF="narenas:1")
    assert settings["POLARS_CSV_CHUNK_SIZE"] == "8388608"
    assert settings["_RJEM_MALLOC_CONF"].endswith(",narenas:1")
    assert "muzzy_decay_ms:0" not in settings["_RJEM_MALLOC_CONF"]
    assert _settings_after_import(OPENBLAS_NUM_THREADS="2")["OPENBLAS_NUM_THREADS"] == "2"
    assert _settings_after_import(OMP_NUM_THREADS="2")["OPENBLAS_NUM_THREADS"] == "None"  # OpenBLAS reads this too


def test_polars_defaults_passed_on_by_a_parent_process_are_not_a_users_setting() -> None:
    # What a scheduler or the benchmark that imported polars (and not the pipeline) passes to its children.
    inherited = subprocess.run([sys.executable, "-c", "import os, polars; print(os.environ['_RJEM_MALLOC_CONF'])"],
                               env=_without_ours(), capture_output=True, text=True, check=True).stdout.strip()
    assert _settings_after_import(_RJEM_MALLOC_CONF=inherited)["_RJEM_MALLOC_CONF"].endswith(
        ",dirty_decay_ms:250,muzzy_decay_ms:0")
    users = _settings_after_import(_RJEM_MALLOC_CONF=f"{inherited},narenas:1")["_RJEM_MALLOC_CONF"]
    assert users.endswith(",narenas:1") and "muzzy_decay_ms:0" not in users
