"""Filesystems and Parquet I/O on file://, s3://, gs:// (and anything fsspec knows).

Everything that touches storage goes through `resolve()`, which returns a pyarrow filesystem and a
path inside it, so Ray Data, Ray Train and pyarrow all see the same filesystem. Writes of a date's
partition go to a staging directory first and are committed by `commit_partition()` last.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import uuid
from dataclasses import dataclass

import fsspec
import pyarrow.fs as pafs

log = logging.getLogger(__name__)


class StorageError(OSError):
    """A path cannot be read or written; the message names the URI."""


@dataclass(frozen=True)
class Location:
    """A path on a pyarrow filesystem, with the URI the user gave for messages."""

    fs: pafs.FileSystem
    path: str
    uri: str

    def join(self, *parts: str) -> Location:
        sep_uri = self.uri.rstrip("/")
        return Location(self.fs, posixpath.join(self.path, *parts), "/".join([sep_uri, *parts]))

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)


def resolve(uri: str, storage_options: dict | None = None) -> Location:
    """Map a path or URL to (pyarrow filesystem, path). Local paths become absolute."""
    if "://" not in uri or uri.startswith("file://"):
        path = os.path.abspath(uri[len("file://"):] if uri.startswith("file://") else uri)
        return Location(pafs.LocalFileSystem(), path, uri)
    try:
        fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        scheme = uri.split("://", 1)[0]
        raise StorageError(
            f"{uri}: no filesystem for scheme {scheme!r} ({exc}); install the matching extra, "
            "e.g. pip install 'forecaster[s3]' or 'forecaster[gcs]'"
        ) from None
    return Location(pafs.PyFileSystem(_FSSpecHandler(fs)), path.rstrip("/"), uri)


class _FSSpecHandler(pafs.FSSpecHandler):
    """pyarrow's fsspec bridge, where deleting a directory that holds no object is a no-op.

    Object stores have no empty directories (`create_dir` writes nothing), so "create a directory, write
    nothing, delete it" must not fail: Ray Data's write_parquet does exactly that for an empty dataset.
    """

    def delete_dir(self, path):
        try:
            super().delete_dir(path)
        except FileNotFoundError:
            pass


def exists(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound


def list_parquet_files(loc: Location) -> list[str]:
    """Parquet files under a file or directory (Hive layout included), skipping _ and . entries."""
    _forget_listings(loc.fs)
    info = loc.fs.get_file_info(loc.path)
    if info.type == pafs.FileType.NotFound:
        raise StorageError(f"{loc.uri}: no such file or directory")
    if info.type == pafs.FileType.File:
        return [loc.path]
    selector = pafs.FileSelector(loc.path, recursive=True)
    files = []
    for entry in loc.fs.get_file_info(selector):
        rel = posixpath.relpath(entry.path, loc.path)
        # "dir/" keys are empty directory markers (S3 console, other tools): listed as files by s3fs
        if entry.type != pafs.FileType.File or entry.path.endswith("/"):
            continue
        if any(part.startswith(("_", ".")) for part in rel.split("/")):
            continue
        files.append(entry.path)
    return sorted(files)


def write_json(loc: Location, payload: dict) -> None:
    loc.fs.create_dir(posixpath.dirname(loc.path), recursive=True)
    tmp = f"{loc.path}.{uuid.uuid4().hex}.tmp"
    with loc.fs.open_output_stream(tmp) as out:
        out.write(json.dumps(payload, indent=2, sort_keys=True, default=str).encode())
    _move(loc.fs, tmp, loc.path)


def read_json(loc: Location) -> dict:
    with loc.fs.open_input_stream(loc.path) as fh:
        return json.loads(fh.read().decode())


def staging_dir(root: Location, name: str) -> Location:
    """A fresh directory under root/_staging/ (ignored by readers: leading underscore)."""
    return root.join("_staging", f"{name}-{uuid.uuid4().hex[:12]}")


def commit_partition(staging: Location, final: Location) -> None:
    """Replace `final` with the finished `staging` directory.

    Local filesystems: the old partition is renamed aside, the new one renamed in, the old one
    deleted; a reader sees either the old or the new directory. Object stores have no directory
    rename, so the files are copied; the manifest written after this is the commit record.
    """
    fs = staging.fs
    _forget_listings(fs)  # `final` may have been written by another process since we last listed
    fs.create_dir(posixpath.dirname(final.path), recursive=True)
    old = None
    if exists(final):
        old = f"{posixpath.dirname(staging.path)}/old-{uuid.uuid4().hex[:12]}"
        _move(fs, final.path, old)
    _move(fs, staging.path, final.path)
    if old is not None:
        fs.delete_dir(old)


def _forget_listings(fs: pafs.FileSystem) -> None:
    """Drop fsspec's cached directory listings (s3fs, gcsfs keep them per process and answer
    `get_file_info` from them): files that Ray workers or other runs wrote are not in them."""
    inner = getattr(getattr(fs, "handler", None), "fs", None)
    if inner is not None and hasattr(inner, "invalidate_cache"):
        inner.invalidate_cache()


def _move(fs: pafs.FileSystem, src: str, dst: str) -> None:
    if not isinstance(fs, pafs.LocalFileSystem) and fs.get_file_info(src).type == pafs.FileType.Directory:
        # Object stores: fsspec's recursive mv copies into dst/<name>/ when dst already exists and fails
        # on empty "src/" marker keys; copy file by file to the same relative paths, then delete src.
        for entry in fs.get_file_info(pafs.FileSelector(src, recursive=True)):
            if entry.type == pafs.FileType.File and not entry.path.endswith("/"):
                fs.copy_file(entry.path, posixpath.join(dst, posixpath.relpath(entry.path, src)))
        fs.delete_dir(src)
        return
    try:
        fs.move(src, dst)
    except (NotImplementedError, OSError):
        if fs.get_file_info(src).type == pafs.FileType.Directory:
            pafs.copy_files(src, dst, source_filesystem=fs, destination_filesystem=fs)
            fs.delete_dir(src)
        else:
            pafs.copy_files(src, dst, source_filesystem=fs, destination_filesystem=fs)
            fs.delete_file(src)
