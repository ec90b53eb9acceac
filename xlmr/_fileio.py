"""Atomic file writes: the one implementation every writer in the project uses.

A file is written under a hidden temporary name in its destination directory, flushed, and moved
into place with ``os.replace``; readers see the old file or the complete new one, never a part.
On any failure (Ctrl-C included) the temporary file is removed.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def temp_path(target: str | os.PathLike) -> Path:
    """A fresh, empty temporary file beside ``target`` (hidden name, ``.tmp`` suffix, usual mode)."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the final file the usual mode
    return Path(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory, then rename)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = True) -> None:
    """Write ``obj`` as indented JSON (UTF-8, non-ASCII kept, trailing newline) to ``path`` atomically."""
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    atomic_write_text(path, text)


class UnsafePathError(ValueError):
    """A checkpoint names a file outside its own directory (``../x``, an absolute path, a symlink out)."""


def contained_path(
    directory: str | os.PathLike, name: str, *, what: str = "file", root: str | os.PathLike | None = None
) -> Path:
    """``directory / name``, refused unless it resolves (symlinks followed) inside ``directory``.

    ``root`` widens the allowed tree for layouts whose files are symlinks by design: a Hugging
    Face cache snapshot (``models--org--name/snapshots/<commit>/``) links into the repo's
    ``blobs/``, so there ``root`` is the repo folder ``models--org--name``.

    Checkpoints are untrusted: a shard index, tokenizer config or module list that names
    ``../secret`` or ``/etc/passwd`` -- or a symlink inside the directory that points out of it --
    must not make a loader read another file. Raises :class:`UnsafePathError` naming ``what``,
    the name and the directory.
    """
    directory = Path(directory)
    if not isinstance(name, str) or not name or "\x00" in name:
        raise UnsafePathError(f"{directory}: {what} name {name!r} is not a relative file name")
    candidate = directory / name
    root = Path(root if root is not None else directory).resolve()
    resolved = candidate.resolve()
    if Path(name).is_absolute() or not resolved.is_relative_to(root):
        raise UnsafePathError(
            f"{directory}: {what} {name!r} resolves to {resolved}, outside the checkpoint directory; "
            "refusing to read it"
        )
    return candidate
