"""Open a file only if it is a regular file, never blocking on what is not one.

A FIFO opened for reading waits for a writer forever, and a device can hang or stream without
end; a folder of traces or a tool's files root may hold either under an innocent name. So the
file is opened without blocking, checked with ``fstat`` (no race with a rename), and only then
switched back to blocking mode. Core layer: used by the trace reader and the tool pack's file
tools, each turning the failure into its own error.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class NotRegularFile(OSError):
    """The path names a FIFO, a device, a socket or a directory."""


def open_regular(path: Path, flags: int) -> int:
    """A descriptor for ``path`` opened with ``flags`` (and ``O_NONBLOCK`` while checking), in
    blocking mode; ``NotRegularFile`` if it is not a regular file, ``OSError`` if it cannot be
    opened."""
    fd = os.open(path, flags | os.O_NONBLOCK, 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularFile(f"{path} is not a regular file")
    os.set_blocking(fd, True)
    return fd
