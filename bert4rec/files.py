"""Atomic file writes: a reader (or a crash, or Ctrl-C) never sees half a file.

Each file is written to a temporary name in the same folder, flushed to disk, then moved over
the target with os.replace, which is atomic on Windows and POSIX alike.
"""

from __future__ import annotations

import json
import os
import pickle
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any


@contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file handle whose content replaces `path` only if the block completes."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # Not tempfile.mkstemp: its files are private (0600); this one gets the usual permissions.
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_with(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Atomically write `path` by calling write(handle), e.g. torch.save or fig.savefig."""
    with atomic_open(path) as handle:
        write(handle)


def write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    write_with(path, lambda handle: handle.write(text.encode(encoding)))


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_pickle(path: str | os.PathLike[str], data: Any) -> None:
    write_with(path, lambda handle: pickle.dump(data, handle, protocol=4))
