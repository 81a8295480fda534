"""The delivery index of a batch run: which batch each identifier went in, kept without the identifier.

One row per identifier sent (or, for a dry run, that would be): the first 16 bytes of the SHA-256 of its normalised
form (an email's, or a pre-hashed value as given) and the batch number. Written beside the manifest as
`delivery_index.parquet`, a row group per batch, as the batches are handed to the sending threads: it grows with the
file on disk, never in memory. With it, `rokt-pipeline lookup` finds a person's batch exactly, and the manifest line
of that batch says what became of it. A one-subject run needs none: its manifest keys each line by the subject.

128 bits of the digest tell 10M identifiers apart with a chance of a collision below 1e-24: exact for any export,
and half the size of the whole digest (155 MB per 10M identifiers on disk, the digests being random).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import polars as pl

from pipeline.batching import Batch
from pipeline.prepare.hashing import WireEncoding, base64_to_hex, sha256_hex

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

INDEX = "delivery_index.parquet"
KEY, BATCH = "sha256_prefix", "batch"
KEY_BYTES = 16


def index_keys(identifiers: pl.Series, encoding: WireEncoding) -> pa.FixedSizeBinaryArray:
    """The index key of each wire identifier: its digest's first 16 bytes."""
    import pyarrow as pa  # here: only runs that send batches need it (30 ms of import)

    if encoding == "hex":
        keys = _hex_prefixes(identifiers)
        if keys is not None:
            return keys
    wire = pl.col("wire")
    hex_digest = {"hex": wire, "base64": base64_to_hex(wire)}.get(encoding)
    if hex_digest is None:  # raw emails on the wire, already normalised: never kept, only their digest
        hex_digest = sha256_hex(wire)
    key = hex_digest.str.slice(0, 2 * KEY_BYTES).str.decode("hex").alias(KEY)
    found = identifiers.to_frame("wire").select(key).get_column(KEY).to_arrow()
    return found.cast(pa.binary()).cast(pa.binary(KEY_BYTES))


def _hex_prefixes(identifiers: pl.Series) -> pa.FixedSizeBinaryArray | None:
    """The first 16 bytes of each 64-digit hex digest, decoded as one string: a tenth of the CPU of polars'
    row-by-row decode (0.19 against 1.4 s per 10M), the largest cost of the index. None unless every value is 64
    hex digits."""
    import pyarrow as pa

    strings = identifiers.to_arrow()
    if isinstance(strings, pa.ChunkedArray):
        strings = strings.combine_chunks()
    if strings.null_count or not pa.types.is_large_string(strings.type):
        return None
    count = len(strings)
    offsets = np.frombuffer(strings.buffers()[1], np.int64)[strings.offset: strings.offset + count + 1]
    if not (np.diff(offsets) == 64).all():
        return None
    digits = np.frombuffer(strings.buffers()[2], np.uint8)[offsets[0]: offsets[0] + 64 * count].reshape(count, 64)
    try:
        prefixes = bytes.fromhex(digits[:, : 2 * KEY_BYTES].tobytes().decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    if len(prefixes) != KEY_BYTES * count:  # fromhex skips spaces; a digest holds none, but never guess
        return None
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(KEY_BYTES), count, [None, pa.py_buffer(prefixes)])


def key_of_hex(digest_hex: str) -> bytes:
    return bytes.fromhex(digest_hex[: 2 * KEY_BYTES])


class DeliveryIndexWriter:
    """Shared by the sending threads: each adds its batch's rows; closed once, when the run's batches are all cut.

    `durable`: each row group reaches the disk as it is written, for a file that is published by a rename (a
    local output folder); one uploaded from the work folder needs no fsync.
    """

    def __init__(self, path: Path, encoding: WireEncoding, durable: bool):
        self.path = path
        self._encoding = encoding
        self._durable = durable
        self._writer: pq.ParquetWriter | None = None
        self._file: BinaryIO | None = None
        self._closed = False
        self._lock = threading.Lock()
        self.rows = 0

    def add(self, batch: Batch) -> None:
        import pyarrow as pa

        identifiers = batch.identifiers
        series = identifiers if isinstance(identifiers, pl.Series) else pl.Series("wire", list(identifiers), dtype=pl.String)
        batches = pl.repeat(batch.index, len(series), dtype=pl.UInt32, eager=True).to_arrow()
        table = pa.table({KEY: index_keys(series, self._encoding), BATCH: batches})
        with self._lock:
            if self._closed:  # a worker left running by a second Ctrl-C, after the run has ended
                return
            if self._writer is None:
                import pyarrow.parquet as pq

                # Digests are random: neither a dictionary nor compression makes them smaller, and trying costs
                # 2.4 s of CPU per 10M rows. The batch column is one value a row group: a dictionary makes it nothing.
                self._file = open(self.path, "wb")
                self._writer = pq.ParquetWriter(self._file, table.schema, use_dictionary=[BATCH],
                                                compression={KEY: "none", BATCH: "zstd"})
            self._writer.write_table(table)
            self.rows += len(series)
            if self._durable:
                # On disk batch by batch, while the run waits on the rate limit, not all at once when it is
                # published (an fsync of 155 MB at the end of a 10M run took 0.4 s).
                self._file.flush()
                os.fsync(self._file.fileno())

    def close(self) -> bool:
        """True when anything was written (the file is whole then)."""
        with self._lock:
            self._closed = True
            if self._writer is None or self._file is None:
                return False
            try:
                self._writer.close()
            finally:
                self._file.close()
            return True


def batches_of(index_path: Path, digest_hex: str) -> list[int]:
    """The batches an identifier (its hex SHA-256) went in, according to a run's index."""
    key = key_of_hex(digest_hex)
    found = pl.scan_parquet(index_path).filter(pl.col(KEY) == pl.lit(key, dtype=pl.Binary)).select(BATCH).collect()
    return sorted(found.get_column(BATCH).unique().to_list())
