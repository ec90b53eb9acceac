"""Atomic writes: the one implementation every writer in the project uses.

Files: a file is written under a hidden temporary name in its destination directory, flushed,
and moved into place with ``os.replace``; readers see the old file or the complete new one,
never a part. On any failure (Ctrl-C included) the temporary file is removed.

Directories: :class:`StagedDirectory` builds a new version of a whole directory beside it and
swaps it in, so a checkpoint directory (weights, ``config.json``, tokenizer files) is either the
old one or the complete new one; a kill at any point leaves one of the two plus a recognisable
temporary directory that the next write removes (:func:`remove_leftovers`). SIGTERM is cleaned
up like Ctrl-C (:func:`sigterm_raises`).

Names: :func:`contained_path` refuses a name a checkpoint gives (a shard in an index, a
tokenizer file) that resolves outside the checkpoint directory.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

logger = logging.getLogger("xlmr")


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


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Write ``path`` atomically: ``write(f)`` fills a temporary file in the same directory, which is
    fsynced and renamed over ``path`` (removed instead on any error)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory, then rename)."""
    atomic_write(path, lambda f: f.write(data))


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


# -- whole-directory replacement ------------------------------------------------------------------
class Terminated(BaseException):
    """SIGTERM arrived while a directory was being staged (raised in place of the default exit)."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[bool]:
    """While inside, SIGTERM raises :class:`Terminated` (so ``finally`` / ``except`` clean-ups run).

    Only where SIGTERM still has its default action and we are in the main thread; yields whether
    the handler was installed. A :class:`Terminated` that leaves the block is turned back into
    the default SIGTERM death (exit status 143 in a shell) once the clean-ups have run, so a
    library caller sees what it would have seen without us, minus the half-written files.
    """
    install = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    )
    if not install:
        yield False
        return

    def handler(signum, frame):
        raise Terminated("terminated by SIGTERM")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield True
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise  # not reached unless SIGTERM is blocked
    finally:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


_LEFTOVER = re.compile(r"\.(?P<name>.+)\.xlmr-(?P<kind>tmp|old)-(?P<pid>\d+)-[A-Za-z0-9_]+")
_INSIDE_LEFTOVER = re.compile(r"\.xlmr-(?P<kind>tmp)-(?P<pid>\d+)-[A-Za-z0-9_]+")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _rmtree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def remove_leftovers(destination: str | os.PathLike) -> list[Path]:
    """Remove what killed writes of ``destination`` left behind; returns the paths removed.

    Leftovers are sibling directories ``.<name>.xlmr-tmp-<pid>-<random>`` (a new version being
    built) and ``.<name>.xlmr-old-<pid>-<random>`` (the old version being retired), plus
    ``.xlmr-tmp-<pid>-<random>`` inside ``destination`` (in-place mode). Those of a process that
    is still running are left alone. Where the destination itself is missing and an old version
    survives (a kill between the two renames of the fallback swap), the old version is put back.
    """
    destination = Path(destination)
    parent, name = destination.parent, destination.name
    removed: list[Path] = []
    candidates = []
    if parent.is_dir():
        for entry in parent.iterdir():
            match = _LEFTOVER.fullmatch(entry.name)
            if match and match["name"] == name and not _pid_alive(int(match["pid"])):
                candidates.append((match["kind"], entry))
    # An old version is restored only when the destination is gone (the fallback swap was cut).
    for kind, entry in sorted(candidates, key=lambda c: c[0] != "old"):
        if kind == "old" and not destination.exists():
            os.rename(entry, destination)
            logger.warning("restored %s from %s (a write was killed mid-swap)", destination, entry.name)
            continue
        _rmtree(entry)
        removed.append(entry)
    if destination.is_dir():
        for entry in destination.iterdir():
            match = _INSIDE_LEFTOVER.fullmatch(entry.name)
            if match and not _pid_alive(int(match["pid"])):
                _rmtree(entry)
                removed.append(entry)
    for entry in removed:
        logger.info("removed %s, left by an interrupted write", entry)
    return removed


def _libc_renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _libc_renameat2()
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange_paths(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    if _RENAMEAT2 is None:
        return False
    rc = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(a), None, os.fspath(b))


def _fsync_path(path: Path) -> None:
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes a hard link to ``src`` (a copy where links are impossible); trees recursively."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        dst.mkdir()
        shutil.copystat(src, dst)
        for child in src.iterdir():
            _link_or_copy(child, dst / child.name)
    else:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


class StagedDirectory:
    """Replace a directory as a whole: the readers of ``destination`` see the old one or the new one.

    Everything is written into :attr:`path`, a sibling temporary directory
    ``.<name>.xlmr-tmp-<pid>-<random>``; :meth:`commit` carries over the entries of the old
    directory that the new one does not replace (hard links, so nothing is copied), fsyncs, and
    swaps the two with one ``renameat2(RENAME_EXCHANGE)`` (elsewhere: two renames, and the next
    run restores the old directory if a kill falls between them); the old version is then
    deleted. Leaving the ``with`` block without :meth:`commit` (an error, Ctrl-C, SIGTERM) deletes
    the temporary directory; a SIGKILL leaves it behind and the next write of the same
    destination removes it (:func:`remove_leftovers`).

    A ``destination`` that is a mount point, or whose parent is not writable, cannot be swapped:
    the temporary directory is then made inside it and the files are moved in one by one, with a
    warning (a kill there can leave a mix). A symlink ``destination`` is followed: the directory it
    points to is replaced and the link kept.

    Example:
        >>> with StagedDirectory("out") as stage:  # doctest: +SKIP
        ...     (stage.path / "config.json").write_text("{}")
        ...     stage.commit()
    """

    def __init__(self, destination: str | os.PathLike) -> None:
        destination = Path(destination)
        if destination.is_symlink():
            destination = destination.resolve()
        self.destination = Path(os.path.abspath(destination))
        if self.destination.exists() and not self.destination.is_dir():
            raise NotADirectoryError(f"{self.destination} is a file, not a directory")
        if self.destination.parent == self.destination:
            raise ValueError(f"cannot replace the root directory {self.destination}")
        self.in_place = False
        self.path: Path = Path()
        self._committed = False
        self._signals: contextlib.ExitStack | None = None

    def __enter__(self) -> StagedDirectory:
        self._signals = contextlib.ExitStack()
        self._signals.enter_context(sigterm_raises())
        try:
            self._start()
        except BaseException:
            self._signals.close()
            raise
        return self

    def _start(self) -> None:
        dest = self.destination
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(dest)
        prefix = f".{dest.name}.xlmr-tmp-{os.getpid()}-"
        if dest.is_dir() and os.path.ismount(dest):
            reason: str | None = "it is a mount point"
        else:
            reason = None
            try:
                self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=dest.parent))
            except OSError as err:
                if not dest.is_dir():
                    raise
                reason = f"no temporary directory can be made beside it: {err.strerror}"
        if reason is not None:
            logger.warning(
                "%s cannot be replaced as a whole (%s); its files are replaced one by one", dest, reason
            )
            self.in_place = True
            self.path = Path(tempfile.mkdtemp(prefix=f".xlmr-tmp-{os.getpid()}-", dir=dest))
        mode = (dest.stat().st_mode & 0o7777) if dest.is_dir() else (0o777 & ~_UMASK)
        os.chmod(self.path, mode)

    def commit(
        self,
        carry_over: Callable[[str], bool] = lambda name: True,
        on_drop: Callable[[Path], None] | None = None,
    ) -> Path:
        """Swap the new directory in; returns ``destination``.

        Entries of the old directory that the new one lacks are carried over when
        ``carry_over(name)`` says so; the others are dropped, each reported to ``on_drop``
        (called with the old path, before the swap) so the caller can log why.
        """
        dest, new = self.destination, self.path
        written = sorted(new.iterdir())  # what the caller wrote: flushed to disk before the swap
        for entry in sorted(dest.iterdir()) if dest.is_dir() else []:
            if entry == new or _INSIDE_LEFTOVER.fullmatch(entry.name) or os.path.lexists(new / entry.name):
                continue  # the new version has its own (or it is ours)
            if not carry_over(entry.name):
                if on_drop is not None:
                    on_drop(entry)
                if self.in_place:
                    _rmtree(entry)
            elif not self.in_place:
                _link_or_copy(entry, new / entry.name)  # carried over: links to data already on disk
        for entry in written:
            for root, dirs, files in os.walk(entry) if entry.is_dir() else [(entry.parent, [], [entry.name])]:
                for name in (*files, *dirs):
                    _fsync_path(Path(root) / name)
            if entry.is_dir():
                _fsync_path(entry)
        _fsync_path(new)
        if self.in_place:
            for entry in sorted(new.iterdir()):
                target = dest / entry.name
                if target.is_dir() and not target.is_symlink():
                    _rmtree(target)
                os.replace(entry, target)
            os.rmdir(new)
            _fsync_path(dest)
        elif not dest.exists():
            os.rename(new, dest)
            _fsync_path(dest.parent)
        else:
            if not exchange_paths(new, dest):
                retired = Path(str(new).replace(".xlmr-tmp-", ".xlmr-old-", 1))
                os.rename(dest, retired)
                os.rename(new, dest)
                new = retired
            _fsync_path(dest.parent)
            _rmtree(new)  # now the old version
        self._committed = True
        return dest

    def __exit__(self, *exc) -> None:
        error = exc[1]
        if isinstance(error, OSError) and error.filename and self.path != Path():
            # Name the file by where it was going, not by the temporary directory it was in.
            name = Path(os.fsdecode(error.filename))
            if name.is_relative_to(self.path):
                error.filename = str(self.destination / name.relative_to(self.path))
        try:
            if not self._committed and self.path != Path() and self.path.exists():
                _rmtree(self.path)
        finally:
            if self._signals is not None:
                self._signals.__exit__(*exc)
