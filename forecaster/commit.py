"""The commit protocol: a date's partition is written to a staging directory and replaces the old
partition of that date in one step, so that a reader sees the complete old or the complete new
partition, never a mix (the design and what a crash leaves behind: docs/reliability.md).

Local filesystems rename; object stores copy the staged files in, then write a commit record (the
commit point), then delete the old files. `recover_partition` repairs what a crashed attempt left.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import posixpath
import shutil
import uuid

import pyarrow.fs as pafs

from forecaster.storage import Location, forget_listings, retry, write_json

log = logging.getLogger(__name__)


def staging_dir(root: Location, name: str) -> Location:
    """A fresh directory under root/_staging/ (ignored by readers: leading underscore)."""
    return root.join("_staging", f"{name}-{uuid.uuid4().hex[:12]}")


def commit_partition(staging: Location, final: Location, *, record: Location | None = None) -> list[str]:
    """Replace `final` with the finished `staging` directory; returns the new partition's files,
    relative to `final`.

    Local filesystems: one atomic rename. A new date is renamed into place; an existing one is swapped
    with the staging directory by renameat2(RENAME_EXCHANGE) (Linux), so a reader sees the complete old
    or the complete new directory at every instant; the old one is then deleted. Where the exchange is
    not available, the old directory is renamed aside (`_staging/old-<name>-<id>`) and the new one
    renamed in; if that fails the old one is renamed back, and a crash between the two renames is
    repaired by `recover_partition` (the next run).

    Object stores have no rename: each staged file is copied into `final` next to the old ones (the
    staging names are unique per attempt, so no old file is overwritten), then `record` (if given) is
    written in one PUT with the list of new files: the commit point. Only then are the old files
    deleted. If a copy or the record fails, the copies made so far are deleted again and the old
    partition stays as it was; after a crash, `recover_partition` uses the record to tell committed
    files from leftovers.
    """
    fs = staging.fs
    forget_listings(fs)  # `final` may have been written by another process since we last listed
    parent = posixpath.dirname(final.path)
    retry(lambda: fs.create_dir(parent, recursive=True), final.uri, "create the table directory")
    if final.is_local:
        _commit_local(staging, final)
        return _relative_files(final)
    copied, old = _copy_in(staging, final)
    files = sorted(posixpath.relpath(p, final.path) for p in copied)
    if record is not None:
        try:
            write_json(record, {"partition": final.uri, "files": files})
        except Exception:
            _discard(final, copied, old)
            raise
    new = set(copied)
    for path in [*(p for p in old if p not in new), f"{final.path}/"]:  # the partition's "dir/" marker key last
        _delete_if_exists(fs, path, final)
    return files


def _relative_files(loc: Location) -> list[str]:
    selector = pafs.FileSelector(loc.path, recursive=True, allow_not_found=True)
    infos = retry(lambda: loc.fs.get_file_info(selector), loc.uri, "list")
    return sorted(posixpath.relpath(i.path, loc.path) for i in infos
                  if i.type == pafs.FileType.File and not i.path.endswith("/"))


def _entries(fs: pafs.FileSystem, path: str, uri: str) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    return [i for i in retry(lambda: fs.get_file_info(selector), uri, "list") if i.type == pafs.FileType.File]


def _delete_if_exists(fs: pafs.FileSystem, path: str, final: Location) -> None:
    def delete() -> None:
        try:
            fs.delete_file(path)
        except FileNotFoundError:
            pass  # deleted by an earlier attempt whose answer was lost, or never there

    retry(delete, _uri_of(final, path), "delete")


def _uri_of(base: Location, path: str) -> str:
    """The URI of `path` (a path on base.fs under base.path), for messages."""
    rel = posixpath.relpath(path.rstrip("/"), base.path)
    return base.uri.rstrip("/") if rel == "." else f"{base.uri.rstrip('/')}/{rel}"


def _copy_in(staging: Location, final: Location) -> tuple[list[str], list[str]]:
    """Copy the staged files into `final`; (paths copied, paths that were in `final` before)."""
    fs = staging.fs
    staged = [i.path for i in _entries(fs, staging.path, staging.uri) if not i.path.endswith("/")]
    old = [i.path for i in _entries(fs, final.path, final.uri)]  # "dir/" marker keys included
    copied: list[str] = []
    try:
        for src in staged:
            dst = posixpath.join(final.path, posixpath.relpath(src, staging.path))
            retry(lambda src=src, dst=dst: fs.copy_file(src, dst), _uri_of(final, dst), "copy the staged file")
            copied.append(dst)
    except Exception:
        _discard(final, copied, old)
        raise
    retry(lambda: fs.delete_dir(staging.path), staging.uri, "delete the staging directory")
    return copied, old


def _discard(final: Location, copied: list[str], old: list[str]) -> None:
    """Best effort: delete the copies of a commit that failed; what this misses, recover_partition does."""
    keep = set(old)
    for dst in copied:
        if dst not in keep:
            try:
                final.fs.delete_file(dst)
            except Exception:
                log.warning("could not delete %s after a failed commit", _uri_of(final, dst))


def _commit_local(staging: Location, final: Location) -> None:
    if not os.path.lexists(final.path):
        _local_rename(staging.path, final.path)
        return
    if _exchange(staging.path, final.path):
        shutil.rmtree(staging.path)  # the staging path now holds the old partition
        return
    name = posixpath.basename(final.path)
    aside = posixpath.join(posixpath.dirname(staging.path), f"old-{name}-{uuid.uuid4().hex[:12]}")
    _local_rename(final.path, aside)
    try:
        _local_rename(staging.path, final.path)
    except BaseException:
        _local_rename(aside, final.path)  # roll back: the old partition is complete again
        raise
    shutil.rmtree(aside)


def _local_rename(src: str, dst: str) -> None:
    os.rename(src, dst)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _renameat2():
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError, TypeError):  # not Linux, or a libc without it (glibc < 2.28)
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _exchange(a: str, b: str) -> bool:
    """Swap two existing paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # kernel or filesystem without the flag
        return False
    raise OSError(err, os.strerror(err), a, None, b)


def recover_partition(table: Location, name: str, committed: list[str] | None = None) -> list[str]:
    """Repair what a crashed commit of partition `name` under `table` left; returns what it did.

    - `_staging/old-<name>-*` (the old partition, renamed aside by a local commit that did not finish):
      renamed back if `name` is missing, else deleted;
    - `_staging/<name>-*` (staging directories of attempts that never committed): deleted;
    - object stores, with `committed` (the file list of the partition's last commit record, relative to
      the partition): files the record does not list are deleted. They are copies of an attempt that
      crashed before its record was written, or old files a crash left after the record was written;
      either way listing readers see the committed partition again.

    Call it before staging a new attempt, never while another run writes the same date.
    """
    fs, final = table.fs, table.join(name)
    staging_root = table.join("_staging")
    forget_listings(fs)
    selector = pafs.FileSelector(staging_root.path, allow_not_found=True)
    entries = retry(lambda: fs.get_file_info(selector), staging_root.uri, "list")
    done = []
    asides = sorted((i for i in entries if i.base_name.startswith(f"old-{name}-")),
                    key=lambda i: i.mtime_ns or 0, reverse=True)
    if asides and final.is_local and not os.path.lexists(final.path):
        _local_rename(asides[0].path, final.path)
        done.append(f"restored {final.uri} from {_uri_of(staging_root, asides[0].path)}")
        asides = asides[1:]
    for info in [*asides, *(i for i in entries if i.base_name.startswith(f"{name}-"))]:
        retry(lambda info=info: fs.delete_dir(info.path), _uri_of(staging_root, info.path), "delete")
        done.append(f"deleted {_uri_of(staging_root, info.path)}")
    if committed is not None and not final.is_local:
        keep = {posixpath.join(final.path, f) for f in committed}
        for info in _entries(fs, final.path, final.uri):
            if info.path not in keep and not info.path.endswith("/"):
                _delete_if_exists(fs, info.path, final)
                done.append(f"deleted uncommitted {_uri_of(final, info.path)}")
    for line in done:
        log.warning("recovery: %s", line)
    return done
