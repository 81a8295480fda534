"""Evidence for issue 8's proposed data path; not part of `make bench`, and not the pipeline's code.

One streaming polars query does read -> normalise -> validate (the schema's checks as expressions) -> hash
-> keep-first de-duplication, and a sink_batches callback only spills: rejects to CSV, kept identifiers
to Arrow IPC, so the first batch exists a fraction of a second after start. Prints when the first 100,000
identifiers were ready, the total, and the peak anonymous RSS (sampled).

    python -m bench.explore_streaming FILE [--dedupe none|fp64|wire] [--no-read-tuning]
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--dedupe", choices=("none", "fp64", "wire"), default="fp64")
    parser.add_argument("--no-read-tuning", action="store_true", help="leave polars' CSV chunk size and Parquet prefetch at their defaults")
    args = parser.parse_args()
    if not args.no_read_tuning:
        os.environ.setdefault("POLARS_CSV_CHUNK_SIZE", str(4 << 20))  # bytes per CSV chunk (default read-ahead is ~250 MB)
        os.environ.setdefault("POLARS_ROW_GROUP_PREFETCH_SIZE", "1")
    import polars as pl

    from pipeline.prepare.hashing import sha256_hex
    from pipeline.prepare.normalise import normalise_email
    from pipeline.prepare.schemas import _EMAIL, MAX_EMAIL_LENGTH
    from pipeline.sources.local import open_local_source

    peak = [0]

    def sample() -> None:
        while True:
            with open("/proc/self/status") as status:
                for line in status:
                    if line.startswith("RssAnon"):
                        peak[0] = max(peak[0], int(line.split()[1]) // 1024)
            time.sleep(0.02)

    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    source = open_local_source(args.file, None, {"email": "Email Address"}, delimiter=",", has_header=True)
    email = pl.col("email")
    # Expr.replace("", None) is not elementwise in the streaming engine: it makes the whole query blocking.
    normalised = normalise_email("email")
    normalised = pl.when(normalised.str.len_bytes() > 0).then(normalised)
    reason = (
        pl.when(email.is_null()).then(pl.lit("empty"))
        .when(email.str.contains(r"[\x00-\x1f\x7f]")).then(pl.lit("email contains control characters"))
        .when(email.str.len_bytes() > MAX_EMAIL_LENGTH).then(pl.lit(f"email longer than {MAX_EMAIL_LENGTH} bytes"))
        .when(~email.str.contains(_EMAIL)).then(pl.lit("not a valid email address"))
    )
    wire = pl.col("wire")
    first = {
        "none": pl.lit(True),
        "fp64": wire.str.slice(0, 16).str.to_integer(base=16, dtype=pl.UInt64).is_first_distinct(),
        "wire": wire.is_first_distinct(),
    }[args.dedupe]
    query = (
        source.frame.with_columns(normalised.alias("email"))
        .with_columns(reason.alias("reason"))
        .with_columns(pl.when(pl.col("reason").is_null()).then(sha256_hex(email)).alias("wire"))
        .with_columns((pl.col("reason").is_null() & first).alias("keep"))
        .select("__file", "__row", "reason", "wire", "keep")
    )
    spill = Path(".bench/explore-streaming")
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir(parents=True)
    state = {"rows": 0, "rejected": 0, "kept": 0, "parts": 0, "first_batch_s": None}
    rejects = open(spill / "rejects.csv", "w")

    def consume(frame: pl.DataFrame) -> None:
        state["rows"] += frame.height
        bad = frame.filter(pl.col("reason").is_not_null())
        if bad.height:
            bad.select("__file", "__row", "reason").write_csv(rejects, include_header=False)
            state["rejected"] += bad.height
        kept = frame.filter("keep").select("wire")
        kept.write_ipc(spill / f"kept-{state['parts']:06d}.arrow", compression="uncompressed")
        state["kept"] += kept.height
        state["parts"] += 1
        if state["first_batch_s"] is None and state["kept"] >= 100_000:
            state["first_batch_s"] = round(time.perf_counter() - started, 2)

    query.sink_batches(consume, chunk_size=250_000)
    rejects.close()
    state.update(dedupe=args.dedupe, total_s=round(time.perf_counter() - started, 2), peak_anon_mib=peak[0])
    print(state)
    shutil.rmtree(spill, ignore_errors=True)


if __name__ == "__main__":
    main()
