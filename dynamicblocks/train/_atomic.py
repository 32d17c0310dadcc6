"""Write a file so that readers only ever see the old or the complete new content."""

from __future__ import annotations

import glob
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success flush it to disk and rename it.

    A process killed at any point leaves either the old file or the new one,
    never a partial one; on an exception the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_leftovers(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files that :func:`atomic_open` left for ``names`` in ``folder``.

    A process killed while writing ``folder/name`` leaves ``.name.XXXX.tmp``;
    only files of exactly that pattern are removed, never anything else.

    Returns:
        The removed paths.
    """
    folder = Path(folder)
    removed = []
    for name in names:
        for path in folder.glob(f".{glob.escape(name)}.*.tmp"):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_open`."""
    path = Path(path)
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return path
