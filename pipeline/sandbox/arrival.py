"""When a request reached the sandbox, as the kernel saw its first bytes arrive: what a real API's edge measures.

Stamped in Python instead, an arrival is late by however long the handler thread waited for a core and for the
GIL, which on a loaded machine (both cores busy) was up to a few hundred milliseconds: a compliant client's
requests then looked bunched, and the sandbox counted violations that were its own. With SO_TIMESTAMPNS the kernel
attaches the receive time to each read, so the first read of a request carries its arrival.
"""

from __future__ import annotations

import io
import socket
import struct
import time

_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value, when the socket module lacks the name
_TIMESTAMP_SPACE = socket.CMSG_SPACE(16)


class StampedSocketReader(io.RawIOBase):
    """The connection's reads, noting the kernel's receive time of the first read since `expect_request()`."""

    def __init__(self, connection: socket.socket):
        super().__init__()
        self._connection = connection
        self._stamped = True
        try:
            connection.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        except OSError:  # no kernel timestamps here: arrivals are stamped when read
            self._stamped = False
        self.first_read_at: float | None = None  # time.time() of the kernel's receive

    def expect_request(self) -> None:
        self.first_read_at = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._stamped:
            return self._connection.recv_into(buffer)
        size, ancillary, _, _ = self._connection.recvmsg_into([buffer], _TIMESTAMP_SPACE)
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and self.first_read_at is None and size:
                seconds, nanoseconds = struct.unpack("qq", data[:16])
                self.first_read_at = seconds + nanoseconds / 1e9
        return size

    def arrival(self) -> float:
        """The request's arrival on the monotonic clock: the kernel's receive time, else now."""
        if self.first_read_at is None:  # read before expect_request() (a pipelined request), or no timestamps
            return time.monotonic()
        return time.monotonic() - max(time.time() - self.first_read_at, 0.0)
