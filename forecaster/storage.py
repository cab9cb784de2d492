"""Filesystems and Parquet I/O on file://, s3://, gs:// (and anything fsspec knows).

Everything that touches storage goes through `resolve()`, which returns a pyarrow filesystem and a
path inside it, so Ray Data, Ray Train and pyarrow all see the same filesystem. How a date's
partition replaces the old one is forecaster/commit.py's.

Calls to storage that can fail for a moment (object stores: connection resets, throttling, 5xx) go
through `retry()`: a few attempts with exponential backoff, then a `StorageError` naming the URI.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import posixpath
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import fsspec
import pyarrow.fs as pafs

log = logging.getLogger(__name__)


class StorageError(OSError):
    """A path cannot be read or written; the message names the URI."""


class StorageNotFoundError(StorageError, FileNotFoundError):
    """A path does not exist; still a FileNotFoundError for callers that expect one."""


# ---- retries ----------------------------------------------------------------------------------

RETRY_ATTEMPTS = 5  # attempts in all (the first try and 4 retries)
RETRY_BASE_S = 0.5  # first backoff; doubles each retry (0.5, 1, 2, 4 s), +-20 % jitter
RETRY_MAX_S = 8.0
_sleep = time.sleep  # tests replace it to record the backoff without waiting

# Messages of transient object-store errors (botocore and s3fs wording). `retry()` classifies by type and
# errno; Ray Data classifies its own write retries by message, so forecaster.write adds these to
# DataContext.retried_io_errors before Ray Data writes a staging directory.
TRANSIENT_PATTERNS = (
    "Could not connect to the endpoint URL",
    "Connect timeout on endpoint URL",
    "Read timeout on endpoint URL",
    "Connection was closed before we received a valid response",
    "Connection reset by peer",
    "Please reduce your request rate",  # SlowDown (503)
    "SlowDown",
    "ServiceUnavailable",
    "Service Unavailable",
    "We encountered an internal error",  # InternalError (500)
    "InternalError",
    "RequestTimeout",
)
# OSErrors that another attempt cannot fix: the path is wrong or forbidden, the disk is full.
_PERMANENT_TYPES = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
_PERMANENT_ERRNOS = {errno.ENOENT, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
                     errno.ENOTEMPTY, errno.EINVAL, errno.ENOSPC, errno.EROFS, errno.ENAMETOOLONG, errno.ENOSYS,
                     errno.EXDEV, errno.EBADF}
# Exception classes (by name: botocore and aiohttp need not be installed) that are worth another attempt.
_TRANSIENT_NAMES = {"ConnectionError", "TimeoutError", "HTTPClientError", "EndpointConnectionError",
                    "ConnectTimeoutError", "ReadTimeoutError", "IncompleteReadError", "ResponseStreamingError",
                    "FSTimeoutError", "ClientPayloadError", "ServerDisconnectedError"}

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """True for errors another attempt may not see: connection and timeout errors, throttling, 5xx."""
    if isinstance(exc, StorageError) or not isinstance(exc, Exception):
        return False
    if isinstance(exc, _PERMANENT_TYPES):
        return False
    if {c.__name__ for c in type(exc).__mro__} & _TRANSIENT_NAMES:
        return True
    if isinstance(exc, OSError):
        return exc.errno not in _PERMANENT_ERRNOS
    return any(p in str(exc) for p in TRANSIENT_PATTERNS)


def retry(op: Callable[[], T], uri: str, what: str, attempts: int | None = None) -> T:
    """`op()`, tried again with exponential backoff while it fails with a transient error.

    `op` must be safe to repeat (idempotent). A transient error that outlasts `attempts` becomes a
    StorageError naming `uri`, what was done and how often; any other OSError becomes a StorageError
    (StorageNotFoundError for a missing path) naming `uri` at once; other exceptions pass unchanged.
    """
    attempts = attempts or RETRY_ATTEMPTS
    for attempt in range(1, attempts + 1):
        try:
            return op()
        except StorageError:
            raise
        except Exception as exc:
            if not is_transient(exc):
                if isinstance(exc, FileNotFoundError):
                    raise StorageNotFoundError(f"{uri}: {what}: no such file or directory ({exc})") from exc
                if isinstance(exc, OSError):
                    raise StorageError(f"{uri}: {what} failed: {type(exc).__name__}: {exc}") from exc
                raise
            if attempt == attempts:
                raise StorageError(f"{uri}: {what} failed {attempts} times, giving up; last error: "
                                   f"{type(exc).__name__}: {exc}") from exc
            delay = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (attempt - 1)) * random.uniform(0.8, 1.2)
            log.warning("%s: %s failed (%s: %s); attempt %d of %d in %.1f s",
                        uri, what, type(exc).__name__, exc, attempt + 1, attempts, delay)
            _sleep(delay)
    raise AssertionError("unreachable")


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

    def delete_file(self, path):
        if path.endswith("/"):  # an empty "dir/" marker key: fsspec's rm would take it for the directory
            self.fs.rm_file(path)
            return
        super().delete_file(path)


def exists(loc: Location) -> bool:
    return retry(lambda: loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound, loc.uri, "stat")


def list_parquet_files(loc: Location) -> list[str]:
    """Parquet files under a file or directory (Hive layout included), skipping _ and . entries."""
    forget_listings(loc.fs)
    info = retry(lambda: loc.fs.get_file_info(loc.path), loc.uri, "stat")
    if info.type == pafs.FileType.NotFound:
        raise StorageError(f"{loc.uri}: no such file or directory")
    if info.type == pafs.FileType.File:
        return [loc.path]
    selector = pafs.FileSelector(loc.path, recursive=True)
    files = []
    for entry in retry(lambda: loc.fs.get_file_info(selector), loc.uri, "list"):
        rel = posixpath.relpath(entry.path, loc.path)
        # "dir/" keys are empty directory markers (S3 console, other tools): listed as files by s3fs
        if entry.type != pafs.FileType.File or entry.path.endswith("/"):
            continue
        if any(part.startswith(("_", ".")) for part in rel.split("/")):
            continue
        files.append(entry.path)
    return sorted(files)


def write_json(loc: Location, payload: dict) -> None:
    """Write `payload` as `loc` in one step (see `write_bytes`): a reader finds the old or the new
    document, never a part of one."""
    write_bytes(loc, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())


# The keyword of each object store's single PUT (fsspec `pipe_file`) that sets the Content-Type a
# browser opening the object's URL is served with.
_CONTENT_TYPE_KEYWORD = {"s3": "ContentType", "s3a": "ContentType", "gs": "content_type", "gcs": "content_type"}


def write_bytes(loc: Location, body: bytes, content_type: str | None = None) -> None:
    """Write `body` as `loc` in one step, so a reader finds the old or the new file, never a part of one.

    A temporary file next to it, then a move (a single PUT and a copy on object stores). With
    `content_type`, object stores that take one (S3, GCS) get the file in a single PUT with that
    Content-Type instead (a PUT replaces an object whole), so a browser opens it from the store.
    """
    inner = getattr(getattr(loc.fs, "handler", None), "fs", None)
    protocol = getattr(inner, "protocol", None)
    protocol = protocol[0] if isinstance(protocol, (tuple, list)) else protocol
    if content_type and protocol in _CONTENT_TYPE_KEYWORD:
        keyword = {_CONTENT_TYPE_KEYWORD[protocol]: content_type}
        retry(lambda: inner.pipe_file(loc.path, body, **keyword), loc.uri, "write")
        return

    def attempt() -> None:
        loc.fs.create_dir(posixpath.dirname(loc.path), recursive=True)
        tmp = f"{loc.path}.{uuid.uuid4().hex}.tmp"
        try:
            with loc.fs.open_output_stream(tmp) as out:
                out.write(body)
            _move(loc.fs, tmp, loc.path)
        except BaseException:
            try:
                loc.fs.delete_file(tmp)
            except Exception:
                pass  # never written, already moved, or the store is down: a stray *.tmp is never read
            raise

    retry(attempt, loc.uri, "write")


def read_json(loc: Location) -> dict:
    def attempt() -> dict:
        with loc.fs.open_input_stream(loc.path) as fh:
            return json.loads(fh.read().decode())

    return retry(attempt, loc.uri, "read")


def forget_listings(fs: pafs.FileSystem) -> None:
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
