"""Checkpoints by Hugging Face Hub name: one place that turns ``org/name`` into local files.

Every ``from_pretrained`` (the models of the three backends, both tokenizers, the config, the
sentence encoders: ``xlmr._sentence.resolve_encoder``), the pipelines and ``xlmr-convert SRC`` accept what HF accepts: a local directory, or a Hub repo id (``org/name``,
``org/name@revision``) with HF's keyword arguments :data:`HUB_KWARGS` (``revision``,
``cache_dir``, ``local_files_only``, ``token``, ``subfolder``, ``force_download``). Names are
resolved through ``huggingface_hub`` (imported only when a name is not a local path), into its
cache laid out as HF lays it out (``models--org--name/snapshots/<commit>/``), so a checkpoint
downloaded by transformers is found by xlmr and the other way round. ``HF_HOME``,
``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` are read when the call is made, not when a library was
imported.

Only the files a call needs are fetched: ``config.json`` and ONE weight format for a model
(``model.safetensors`` first, then the backend's own file, then any other; for a shard index,
the index and the shards it lists), the tokenizer files for a tokenizer, all of these for a
conversion. Offline (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``) a file missing from the
cache is a :class:`FileNotFoundError` that says so and names the repo, revision and file.

The files are still untrusted: loaders read them through :func:`xlmr._fileio.contained_path`
with ``root`` the repo's cache folder (snapshot files are symlinks into its ``blobs/``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._fileio import UnsafePathError, contained_path

#: HF's ``from_pretrained`` keyword arguments for the Hub, in the order HF documents them.
HUB_KWARGS = ("revision", "cache_dir", "local_files_only", "token", "subfolder", "force_download")

CONFIG_NAME = "config.json"

#: Each backend's own weight format, tried after ``model.safetensors``.
BACKEND_FORMATS = {"torch": "pytorch", "tf": "tf", "flax": "flax"}

#: Weight format -> (single file, shard index), the names ``conversion.FORMATS`` reads (a test
#: keeps the two tables equal; the core cannot import ``conversion``).
WEIGHT_FILES: dict[str, tuple[str, str]] = {
    "safetensors": ("model.safetensors", "model.safetensors.index.json"),
    "pytorch": ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    "tf": ("tf_model.h5", "tf_model.h5.index.json"),
    "flax": ("flax_model.msgpack", "flax_model.msgpack.index.json"),
}

#: A tokenizer's files, in the order they are fetched (``tokenizer.json``: the fast class only).
TOKENIZER_FILES = (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "sentencepiece.bpe.model",
    "tokenizer.json",
)

_TRUE = {"1", "ON", "YES", "TRUE"}


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").upper() in _TRUE


def offline_reason(local_files_only: bool = False) -> str | None:
    """Why no request may go out (``"HF_HUB_OFFLINE=1"``, ``"local_files_only=True"``), or None."""
    if local_files_only:
        return "local_files_only=True"
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _env_true(name):
            return f"{name}=1"
    return None


def default_cache_dir() -> Path:
    """The Hub cache huggingface_hub uses, from the environment as it is now.

    ``HF_HUB_CACHE`` (or the older ``HUGGINGFACE_HUB_CACHE``), else ``$HF_HOME/hub``, else
    ``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``: huggingface_hub's own
    rule, re-read at each call (huggingface_hub reads it once, when first imported).
    """
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(os.path.expanduser(explicit)))
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "huggingface"
    )
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def pop_hub_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Remove HF's Hub arguments (:data:`HUB_KWARGS`) from ``kwargs`` and return them."""
    return {name: kwargs.pop(name) for name in HUB_KWARGS if name in kwargs}


def hub_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """HF's Hub arguments among ``kwargs`` (left in place)."""
    return {name: kwargs[name] for name in HUB_KWARGS if name in kwargs}


def cache_root(directory: str | os.PathLike) -> Path | None:
    """The repo folder ``models--org--name`` of a directory (or file) inside an HF cache snapshot, else None.

    A snapshot's files are symlinks into the repo's ``blobs/``, so that folder is the tree
    they may resolve into (``root`` of :func:`xlmr._fileio.contained_path`).
    """
    given = Path(os.path.abspath(directory))  # a snapshot file is a symlink: do not follow it here
    real = (given if given.is_dir() else given.parent).resolve()  # a link to a snapshot folder: follow
    for path in (given, real):
        for parent in (path, *path.parents):
            if parent.parent.name == "snapshots" and parent.parent.parent.name.startswith("models--"):
                return parent.parent.parent
    return None


def split_revision(name: str) -> tuple[str, str | None]:
    """``"org/name@rev"`` -> ``("org/name", "rev")``; a name without ``@`` has no revision."""
    repo_id, at, revision = name.partition("@")
    return (repo_id, revision) if at else (name, None)


def is_hub_name(name_or_path: Any) -> bool:
    """Whether ``name_or_path`` names a Hub repo: a str that is no existing path and is a valid repo id
    (``name`` or ``org/name``, optionally ``@revision``). ``os.PathLike`` objects are always paths."""
    if not isinstance(name_or_path, str) or os.path.exists(name_or_path):
        return False
    repo_id, revision = split_revision(name_or_path)
    if revision == "" or repo_id.count("/") > 1:
        return False
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


@dataclass
class Resolved:
    """Where a checkpoint's files lie on this machine.

    Attributes:
        path: What to hand the loader: the weight file (or shard index) fetched for a model from
            the Hub; the directory (``subfolder`` joined) for a local path or a config/tokenizer.
        directory: The directory holding the files.
        root: The tree the files may resolve into: the repo's cache folder for a Hub snapshot
            (also for a local path into an HF cache), else None (the directory itself).
        name_or_path: What ``from_pretrained`` records as ``name_or_path``: the path as given, or
            the repo id (without ``@revision``), as HF records them.
        repo_id, revision: The Hub repo and the revision asked for (None for a local path).
        fetched: The repo files fetched (or found in the cache), in order.
    """

    path: Path
    directory: Path
    root: Path | None
    name_or_path: str
    repo_id: str | None = None
    revision: str | None = None
    fetched: list[str] = field(default_factory=list)


def _local(name_or_path: str | os.PathLike, subfolder: str | None) -> Resolved:
    directory = Path(name_or_path) / subfolder if subfolder else Path(name_or_path)
    return Resolved(directory, directory, cache_root(directory), os.fspath(name_or_path))


class _Repo:
    """One repo at one revision, fetching files through ``hf_hub_download`` with the call's arguments."""

    def __init__(self, name: str, kwargs: Mapping[str, Any]) -> None:
        unknown = sorted(set(kwargs) - set(HUB_KWARGS))
        if unknown:
            raise TypeError(f"unexpected Hub argument(s) {unknown}; expected some of {list(HUB_KWARGS)}")
        self.name = name
        self.repo_id, at_revision = split_revision(name)
        revision = kwargs.get("revision")
        if at_revision is not None and revision is not None and revision != at_revision:
            raise ValueError(f"{name!r} names revision {at_revision!r} but revision={revision!r} was passed")
        self.revision = at_revision or revision
        self.subfolder = kwargs.get("subfolder") or None
        cache_dir = kwargs.get("cache_dir")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.offline = offline_reason(bool(kwargs.get("local_files_only", False)))
        self.token = kwargs.get("token")
        self.force_download = bool(kwargs.get("force_download", False))
        self.fetched: list[str] = []
        self.directory: Path | None = None
        self.unreachable: Exception | None = None  # online, a file neither fetched nor in the cache

    def where(self) -> str:
        sub = f", subfolder {self.subfolder!r}" if self.subfolder else ""
        return f"Hub repo {self.repo_id} (revision {self.revision or 'main'}{sub})"

    def _missing(self, names: str, err: Exception | None) -> FileNotFoundError:
        if self.offline:
            return FileNotFoundError(
                f"offline ({self.offline}): {names} of {self.where()} is not in the Hugging Face cache at "
                f"{self.cache_dir} (and {self.name!r} is no local directory); download it once online "
                f"(huggingface-cli download {self.repo_id}) or pass a local directory"
            )
        detail = f" ({' '.join(str(err).split())[:300]})" if err is not None else ""
        return FileNotFoundError(
            f"{names} of {self.where()} could not be fetched and is not in the Hugging Face cache at "
            f"{self.cache_dir} (and {self.name!r} is no local directory){detail}"
        )

    def fetch(self, filename: str, *, required: bool) -> Path | None:
        """The local path of ``filename``; None when the repo lacks it (or, offline, the cache does)
        and it is not ``required``, else a FileNotFoundError naming the repo, revision and file."""
        import huggingface_hub
        from huggingface_hub import errors

        try:
            local = huggingface_hub.hf_hub_download(
                self.repo_id,
                filename,
                subfolder=self.subfolder,
                revision=self.revision,
                cache_dir=self.cache_dir,
                local_files_only=self.offline is not None,
                token=self.token,
                force_download=self.force_download,
                library_name="xlmr",
            )
        except errors.LocalEntryNotFoundError as err:  # offline, or no connection: not in the cache
            if required:
                raise self._missing(filename, err) from None
            self.unreachable = self.unreachable or err
            return None
        except errors.EntryNotFoundError:  # the repo has no such file
            if required:
                raise FileNotFoundError(f"{self.where()} has no file {filename}") from None
            return None
        except errors.RevisionNotFoundError as err:
            raise FileNotFoundError(f"{self.where()}: no such revision ({_first_line(err)})") from None
        except errors.RepositoryNotFoundError as err:  # also gated or private without a token
            raise FileNotFoundError(
                f"{self.repo_id!r} is neither a local directory nor a Hub repo this call can read "
                f"({_first_line(err)}); pass token= (or set HF_TOKEN) for a private or gated repo"
            ) from None
        path = Path(local)
        # The cache is untrusted too: a snapshot file must link inside the repo's folder (its blobs/).
        repo_folder = cache_root(path.parent)
        if repo_folder is None:
            raise UnsafePathError(
                f"{self.where()}: {filename} was fetched to {path}, outside a Hub cache snapshot"
            )
        path = contained_path(path.parent, path.name, what=f"{self.repo_id} file", root=repo_folder)
        self.fetched.append(filename)
        if self.directory is None:
            self.directory = path.parent
        return path

    def not_found(self, what: str) -> FileNotFoundError:
        """The error for a needed ``what`` that no fetch found: offline or unreachable (the cache lacks
        it), else the repo has none."""
        if self.offline or self.unreachable:
            return self._missing(what, self.unreachable)
        return FileNotFoundError(f"{self.where()} has no {what}")

    def known_absent(self, filename: str) -> bool:
        """Whether the cache records that the repo has no ``filename`` at this revision (a 404 seen online)."""
        import huggingface_hub

        name = "/".join(p for p in (self.subfolder, filename) if p)
        found = huggingface_hub.try_to_load_from_cache(
            self.repo_id, name, cache_dir=self.cache_dir, revision=self.revision
        )
        return found is not None and not isinstance(found, str)

    def resolved(self, path: Path | None = None) -> Resolved:
        directory = self.directory
        if directory is None:  # nothing fetched: cannot happen for a required file
            raise FileNotFoundError(f"nothing was fetched from {self.where()}")
        return Resolved(
            path=path or directory,
            directory=directory,
            root=cache_root(directory),
            name_or_path=self.repo_id,
            repo_id=self.repo_id,
            revision=self.revision,
            fetched=list(self.fetched),
        )


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def _weight_order(native: str | None) -> list[str]:
    """``safetensors``, then ``native``, then the other formats in :data:`WEIGHT_FILES` order."""
    order = ["safetensors"]
    if native is not None:
        if native not in WEIGHT_FILES:
            raise ValueError(f"unknown weight format {native!r}; expected one of {tuple(WEIGHT_FILES)}")
        order.append(native)
    return order + [fmt for fmt in WEIGHT_FILES if fmt not in order]


def _shard_names(index: Path) -> list[str]:
    """The shard file names a ``*.index.json`` lists (plain file names beside it; the loader checks the rest)."""
    try:
        obj = json.loads(index.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{index}: not a valid shard index ({type(err).__name__}: {err})") from None
    weight_map = obj.get("weight_map") if isinstance(obj, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index}: not a valid shard index (needs a non-empty 'weight_map' object)")
    names = []
    for key, name in weight_map.items():
        if not isinstance(name, str):
            raise ValueError(f"{index}: weight_map[{key!r}] must be a shard file name, got {name!r}")
        if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
            raise UnsafePathError(f"{index}: shard name {name!r} is not a file name beside the index")
        names.append(name)
    return sorted(dict.fromkeys(names))


def open_repo(name: str, **hub: Any) -> _Repo:
    """One Hub repo at one revision (``name``: ``org/name[@revision]``), to fetch files from one by one."""
    return _Repo(name, hub)


def fetch_weights(repo: _Repo, native: str | None, prefix: str = "") -> Path:
    """ONE weight format of the checkpoint in folder ``prefix`` (``""``: the root; else ending in ``/``) of
    ``repo``: safetensors, then ``native``, then any other; for a shard index, the index and its shards."""
    order = _weight_order(native)
    for fmt in order:
        single, index = WEIGHT_FILES[fmt]
        path = repo.fetch(prefix + single, required=False)
        if path is not None:
            return path
        path = repo.fetch(prefix + index, required=False)
        if path is not None:
            for shard in _shard_names(path):
                repo.fetch(prefix + shard, required=True)
            return path
    names = ", ".join(prefix + name for fmt in order for name in WEIGHT_FILES[fmt])
    if repo.offline or repo.unreachable:
        raise repo._missing(f"a weight file (looked for {names})", repo.unreachable)
    raise FileNotFoundError(f"{repo.where()} holds no weight file (looked for {names})")


def resolve_model(
    name_or_path: str | os.PathLike,
    native: str | None = None,
    *,
    tokenizer: bool = False,
    **hub: Any,
) -> Resolved:
    """A model checkpoint: ``config.json`` and one weight format (plus the tokenizer files with ``tokenizer``).

    Args:
        name_or_path: A local directory (or weight file), or a Hub repo id (``org/name[@revision]``).
        native: The calling backend's own format (``"pytorch"``, ``"tf"``, ``"flax"``), tried
            after ``model.safetensors``; None for no preference.
        tokenizer: Fetch the tokenizer files too (a conversion copies them).
        **hub: HF's Hub arguments (:data:`HUB_KWARGS`).

    Returns:
        :class:`Resolved`; for a Hub name ``path`` is the weight file (or shard index) fetched.
    """
    if not is_hub_name(name_or_path):
        return _local(name_or_path, hub.get("subfolder"))
    repo = _Repo(name_or_path, hub)
    repo.fetch(CONFIG_NAME, required=True)
    weights = fetch_weights(repo, native)
    if tokenizer:
        for name in TOKENIZER_FILES:
            repo.fetch(name, required=False)
    return repo.resolved(weights)


def resolve_config(name_or_path: str | os.PathLike, **hub: Any) -> Resolved:
    """``config.json`` alone (``path``: its directory)."""
    if not is_hub_name(name_or_path):
        return _local(name_or_path, hub.get("subfolder"))
    repo = _Repo(name_or_path, hub)
    repo.fetch(CONFIG_NAME, required=True)
    return repo.resolved()


def resolve_files(
    name_or_path: str | os.PathLike, files: Iterable[str], *, need_one_of: Iterable[str] = (), **hub: Any
) -> Resolved:
    """Optional files of a repo (a tokenizer's), at least one of ``need_one_of`` present (``path``: the directory)."""
    if not is_hub_name(name_or_path):
        return _local(name_or_path, hub.get("subfolder"))
    repo = _Repo(name_or_path, hub)
    for name in files:
        repo.fetch(name, required=False)
    needed = tuple(need_one_of)
    if needed and not set(needed) & set(repo.fetched):
        raise repo.not_found(" or ".join(needed))
    return repo.resolved()


def record_name(model: Any, name_or_path: str) -> Any:
    """Set ``model.name_or_path`` and ``model.config.name_or_path`` as HF's ``from_pretrained`` does."""
    model.config.name_or_path = name_or_path
    model.name_or_path = name_or_path
    return model
