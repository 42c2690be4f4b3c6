"""Files that appear whole or not at all: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = '.tmp') -> Iterator[pathlib.Path]:
    """Yields a temporary path in `path`'s directory; when the block succeeds it is renamed to `path`.

    A reader never sees a half-written `path`. If the block raises, `path` is untouched and the temporary file
    removed. `suffix` keeps extensions that writers insist on (np.savez adds '.npz' unless the name ends so).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix=suffix)
    os.close(handle)
    try:
        yield pathlib.Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Writes `payload` to `path` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(payload)


def read_npz(path: str | os.PathLike) -> dict:
    """All arrays of an .npz file as {name: np.ndarray}, without pickles; an unreadable file (not an npz, truncated,
    object arrays) is a one-line ValueError naming it."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ValueError(f'{path}: not a readable .npz of plain arrays ({" ".join(str(error).split())[:200]})') \
            from None
