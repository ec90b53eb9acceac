"""A Hugging Face Hub cache laid out by hand exactly as huggingface_hub lays it out, for offline tests.

``<cache>/models--<org>--<name>/`` holds ``blobs/<etag>`` (the git blob sha1 of a regular file, the
sha256 of an LFS file: weights and the SentencePiece model), ``snapshots/<commit>/<path>`` (relative
symlinks into ``blobs/``, one folder per commit) and ``refs/<revision>`` (the commit hash, no
newline). tests/test_hub.py checks the layout with huggingface_hub's own ``scan_cache_dir`` and
``try_to_load_from_cache``.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

LFS_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".model")


def etag(name: str, data: bytes) -> str:
    """The blob name huggingface_hub gives a file: sha256 for LFS files, the git blob sha1 otherwise."""
    if name.endswith(LFS_SUFFIXES):
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_hash(label: str) -> str:
    return hashlib.sha1(f"commit {label}".encode()).hexdigest()


def repo_folder(cache: Path, repo_id: str) -> Path:
    return Path(cache) / ("models--" + repo_id.replace("/", "--"))


def add_commit(
    cache: Path, repo_id: str, files: Mapping[str, bytes], *, label: str, refs: Iterable[str] = ()
) -> str:
    """Put ``files`` (repo path -> bytes) in the cache as commit ``label``; point ``refs`` at it."""
    repo = repo_folder(cache, repo_id)
    commit = commit_hash(label)
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / etag(name, data)
        if not blob.exists():
            blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return commit


def directory_files(directory: Path, prefix: str = "") -> dict[str, bytes]:
    """``{prefix + relative path: bytes}`` of every file under ``directory``."""
    return {
        prefix + path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(Path(directory).rglob("*"))
        if path.is_file()
    }


def add_no_exist(cache: Path, repo_id: str, commit: str, names: Iterable[str]) -> None:
    """Record in the cache that commit ``commit`` lacks ``names`` (what huggingface_hub writes on a 404:
    empty files ``.no_exist/<commit>/<path>``)."""
    for name in names:
        marker = repo_folder(cache, repo_id) / ".no_exist" / commit / name
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()


def go_offline(monkeypatch: pytest.MonkeyPatch, cache: Path) -> None:
    """``HF_HUB_CACHE`` = ``cache``, ``HF_HUB_OFFLINE=1``, no ``HF_HOME``, and no socket may connect."""
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HOME", raising=False)

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"a test tried to connect to the network: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def record_fetches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The repo file names asked of ``hf_hub_download`` and found, in order (subfolder joined)."""
    import huggingface_hub

    names: list[str] = []
    real = huggingface_hub.hf_hub_download

    def recording(repo_id, filename, **kwargs):
        path = real(repo_id, filename, **kwargs)
        names.append("/".join(p for p in (kwargs.get("subfolder"), filename) if p))
        return path

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", recording)
    return names
