"""Saved indexes on disk: checksummed data files committed atomically by one JSON manifest.

A saved index is a directory::

    manifest.json          format version, backend + config, dim, count, model info, files + SHA-256
    data-<time>-<pid>-<n>/ the data files the manifest names (vectors.npy, ids.npy, ...)

`write_snapshot` writes every data file into a fresh `data-*` sub-directory and fsyncs the
files and the directories; only then does it write the manifest to a temporary name, fsync it
and `os.replace` it onto `manifest.json`. That rename is the commit point: a crash at any
moment before it leaves the previous manifest, and the data directory it names, untouched.
Older `data-*` directories are deleted after the commit (and any left by a crashed save are
deleted by the next one). Nothing is pickled: arrays are `.npy` files written with
`allow_pickle=False`, everything else is JSON or a backend's own format. One writer at a time
per directory; a reader that loads while a save commits may find the old files already gone
(IndexFileError) and should load again.

Test hook: when the environment variable `VISNET_INDEX_SAVE_PAUSE` holds a number of
seconds, `write_snapshot` prints `visnet-index-save-paused` on stderr once the data files are
durable and sleeps that long before committing the manifest, so a test can kill the process
exactly between the two.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

FORMAT = "visnet-index"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATA_PREFIX = "data-"
PAUSE_ENV = "VISNET_INDEX_SAVE_PAUSE"
PAUSE_MESSAGE = "visnet-index-save-paused"


class IndexFileError(ValueError):
    """A saved index is unreadable: a data file is missing, corrupt or inconsistent."""


class ModelMismatchError(ValueError):
    """A saved index was built with another embedding model than the caller expects."""


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: str) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fresh_data_dir(directory: str) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1000):
        name = f"{DATA_PREFIX}{stamp}-{os.getpid()}-{n}"
        try:
            os.mkdir(os.path.join(directory, name))
            return name
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a fresh data directory in {directory!r}")


def write_snapshot(directory: str, write: Callable[[str], Mapping[str, Any]],
                   model: Mapping[str, Any] | None = None) -> dict:
    """Writes data files with `write` and commits them with a new manifest.

    Args:
        directory: str. The index directory; created if needed.
        write: callable. Writes its files (flat, no sub-directories) into the data directory
            it is given and returns the manifest fields that describe them (backend, config...).
        model: dict or None. What embedded the vectors, e.g. `{"name": "visnet", "version": "3"}`.

    Returns:
        dict. The committed manifest.
    """
    os.makedirs(directory, exist_ok=True)
    data = _fresh_data_dir(directory)
    data_dir = os.path.join(directory, data)
    try:
        fields = dict(write(data_dir))
        files = {}
        for name in sorted(os.listdir(data_dir)):
            path = os.path.join(data_dir, name)
            _fsync_file(path)
            files[name] = {"sha256": sha256(path), "bytes": os.path.getsize(path)}
        _fsync_dir(data_dir)
        _fsync_dir(directory)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        print(PAUSE_MESSAGE, file=sys.stderr, flush=True)
        time.sleep(float(pause))

    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **fields,
        "model": dict(model or {}),
        "data": data,
        "files": files,
    }
    temporary = os.path.join(directory, f".{MANIFEST}.{os.getpid()}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, os.path.join(directory, MANIFEST))  # the commit point
    _fsync_dir(directory)

    for name in os.listdir(directory):
        if name.startswith(DATA_PREFIX) and name != data:
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
        elif name.startswith(f".{MANIFEST}.") and name.endswith(".tmp"):
            os.remove(os.path.join(directory, name))
    return manifest


def check_model(saved: Mapping[str, Any] | None, expected: str | Mapping[str, Any] | None,
                directory: str) -> None:
    """Raises ModelMismatchError when the saved model info differs from `expected`.

    Args:
        saved: dict. The manifest's model info.
        expected: a version string (compared with `saved["version"]`), a dict of fields that
            must all match (e.g. `{"name": ..., "version": ...}`), or None (no check).
        directory: str. Named in the error.
    """
    if expected is None:
        return
    wanted = {"version": expected} if isinstance(expected, str) else dict(expected)
    saved = dict(saved or {})
    for key, value in wanted.items():
        if saved.get(key) != value:
            raise ModelMismatchError(
                f"The index in {directory!r} was built with model {key} {saved.get(key)!r}, but "
                f"expected_model asks for {key} {value!r}. Embed the catalogue again with the "
                "current model and save a new index."
            )


def require_listed(manifest: Mapping[str, Any], data_dir: str, name: Any, what: str = "") -> str:
    """The path of the data file `name`, or IndexFileError unless the manifest lists it (and so
    `read_snapshot` verified its checksum): a loader opens no file the manifest does not vouch for.

    Args:
        manifest: dict. A manifest returned by `read_snapshot`.
        data_dir: str. Its data directory.
        name: the file name, as a manifest field gives it.
        what: str. How the error names the file (default: its path).
    """
    files = manifest.get("files")
    if not isinstance(name, str) or not isinstance(files, Mapping) or name not in files:
        shown = what or (os.path.join(data_dir, name) if isinstance(name, str) else repr(name))
        where = os.path.join(os.path.dirname(os.path.normpath(data_dir)), MANIFEST)
        raise IndexFileError(f"{shown} is not listed in {where}, so its checksum was not verified.")
    return os.path.join(data_dir, name)


def read_snapshot(directory: str, expected_model: str | Mapping[str, Any] | None = None) -> tuple[dict, str]:
    """Reads and checks a saved index's manifest and data files.

    Args:
        directory: str. The index directory.
        expected_model: see `check_model`.

    Returns:
        (manifest dict, path of the data directory).

    Raises:
        FileNotFoundError: the directory holds no manifest.
        ModelMismatchError: the model info differs from `expected_model`.
        IndexFileError: the manifest is unreadable or a data file is missing or fails its checksum.
    """
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No saved index in {directory!r}: {MANIFEST} is missing. Save an index there with save()."
        )
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise IndexFileError(f"Cannot read {path}: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexFileError(f"{path} is not a visnet index manifest (no \"format\": \"{FORMAT}\").")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise IndexFileError(
            f"{path} has format_version {version!r}; this visnet reads versions up to {FORMAT_VERSION}."
        )
    check_model(manifest.get("model"), expected_model, directory)
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(info, dict) and isinstance(info.get("sha256"), str) for info in files.values()):
        raise IndexFileError(f"{path} has no valid \"files\" table (name: {{\"sha256\": ...}}).")
    names = [manifest.get("data", ""), *files]
    if not isinstance(names[0], str) or not names[0].startswith(DATA_PREFIX) or any(
            not name or name in (".", "..") or os.path.basename(name) != name for name in names):
        raise IndexFileError(f"{path} names data files outside its directory: {names}")
    data_dir = os.path.join(directory, manifest["data"])
    for name, info in files.items():
        file = os.path.join(data_dir, name)
        if not os.path.isfile(file):
            raise IndexFileError(f"{file} is missing; the manifest lists it.")
        found = sha256(file)
        if found != info["sha256"]:
            raise IndexFileError(
                f"Checksum mismatch for {file}: the manifest has sha256 {info['sha256']}, the file "
                f"has {found}. The file is corrupt or was changed after saving."
            )
    return manifest, data_dir
