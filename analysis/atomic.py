"""Write files atomically, so a reader never sees a half-written output."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` and rename it onto ``path`` if the block succeeds.

    The block must create the file at the temporary path. It lies in the same directory,
    so the final os.replace is atomic on POSIX file systems. If the block raises, the
    temporary file is removed and ``path`` is left unchanged. Parent directories are
    created as needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Globs such as part-*.parquet skip a hidden name, and the pid and random suffix keep
    # concurrent writers apart.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
