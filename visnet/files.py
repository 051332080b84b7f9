"""Files written so that a reader sees the old file or the new one, never half of one.

Each write goes to a temporary file beside the target (same folder, so the same file system)
and is renamed onto it with `os.replace`, which is atomic. A write that fails (full disk, bad
data, an interrupted save) leaves the old file as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator


@contextlib.contextmanager
def replacing(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a fresh temporary path beside `path` to write to; when the block ends without an
    error it is renamed onto `path`, and in every case no temporary file is left.

    Args:
        path: str. The file to write (its folder is made if missing).
        suffix: str. The temporary file's ending, for writers that choose the format by it
            (`.keras`, `.weights.h5`).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # A name no other writer (thread or process) picks, created by the writer itself so the
    # file gets the usual permissions (mkstemp's would be owner-only).
    partial = os.path.join(folder, f".partial-{uuid.uuid4().hex}{suffix}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def write_file(path: str, data: bytes | str) -> None:
    """Writes `data` (text as UTF-8) to `path` through `replacing`, flushed to disk before the rename."""
    with replacing(path) as partial:
        with open(partial, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
