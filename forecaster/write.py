"""Write: forecasts and rejects as Hive partitions `forecast_date=YYYY-MM-DD`, manifest last.

Each date's partition is written by Ray Data into a staging directory (`<table>/_staging/…`,
ignored by Parquet readers because of the leading underscore) and then committed over the old
partition of that date only; other dates are never touched. `write_parquet(mode="overwrite")` on
the table root is never used: it would delete every other date.

A reader sees a date's partition complete, old or new, never a mix (docs/reliability.md):

- local filesystems: the staging directory replaces the partition in one atomic rename;
- object stores (no rename): the staged files are copied in next to the old ones under names unique
  to the attempt; the manifest, written last in one PUT, lists the new files (`files`); only then
  are the old files deleted. A reader that needs strict atomicity on an object store reads the file
  list of `manifests/forecast_date=D.json` (`committed_paths`) instead of listing the prefix.

Before staging, `write_partition` repairs what a crashed earlier attempt of the same date left
(`storage.recover_partition`).
"""

from __future__ import annotations

import logging
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from forecaster.storage import (
    TRANSIENT_PATTERNS,
    Commit,
    Location,
    StorageError,
    commit_partition,
    exists,
    finish_commit,
    read_json,
    recover_partition,
    retry,
    staging_dir,
    write_json,
)

log = logging.getLogger(__name__)

FORECASTS, REJECTS, MANIFESTS = "forecasts", "rejects", "manifests"
REJECT_SCHEMA = pa.schema([("unique_id", pa.string()), ("reason", pa.string()), ("detail", pa.string())])

# Commits whose old files wait for the manifest: {(local?, root path, date): {table: Commit}}
_PENDING: dict[tuple[bool, str, str], dict[str, Commit]] = {}


def partition(root: Location, table: str, forecast_date: str) -> Location:
    return root.join(table, f"forecast_date={forecast_date}")


def manifest_location(root: Location, forecast_date: str) -> Location:
    return root.join(MANIFESTS, f"forecast_date={forecast_date}.json")


def _key(root: Location, forecast_date: str) -> tuple[bool, str, str]:
    return root.is_local, root.path, forecast_date


def write_partition(root: Location, table: str, forecast_date: str, rows: ray.data.Dataset,
                    empty_schema: pa.Schema) -> Location:
    """Write `rows` as the whole `forecast_date` partition of `table`, replacing an older one.

    On object stores the old files of the date stay until `write_manifest` has recorded the new ones.
    """
    final = partition(root, table, forecast_date)
    name = f"forecast_date={forecast_date}"
    committed = None if root.is_local else committed_files(root, table, forecast_date)
    recover_partition(root.join(table), name, committed)
    staging = staging_dir(root.join(table), name)
    retry(lambda: staging.fs.create_dir(staging.path, recursive=True), staging.uri, "create the staging directory")
    _retry_transient_write_errors()
    rows.write_parquet(staging.path, filesystem=staging.fs)  # file names carry Ray Data's write UUID
    if not _has_files(staging):
        # An empty result is still a committed partition: readers see the schema and zero rows.
        empty = f"{staging.path}/empty-{uuid.uuid4().hex}.parquet"
        retry(lambda: pq.write_table(empty_schema.empty_table(), empty, filesystem=staging.fs), staging.uri,
              "write the empty partition file")
    commit = commit_partition(staging, final, defer_delete=True)
    _PENDING.setdefault(_key(root, forecast_date), {})[table] = commit
    log.info("committed %s (%d files)", final.uri, len(commit.files))
    return final


def _retry_transient_write_errors() -> None:
    """Ray Data retries a failed file write (10 attempts, exponential backoff) when the error message
    matches DataContext.retried_io_errors; add the object-store messages it does not know."""
    ctx = ray.data.DataContext.get_current()
    missing = [p for p in TRANSIENT_PATTERNS if p not in ctx.retried_io_errors]
    if missing:
        ctx.retried_io_errors = [*ctx.retried_io_errors, *missing]


def _has_files(loc: Location) -> bool:
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(loc.path, recursive=True, allow_not_found=True)
    infos = retry(lambda: loc.fs.get_file_info(selector), loc.uri, "list")
    return any(i.type == pafs.FileType.File and not i.path.endswith("/") for i in infos)


def write_manifest(root: Location, forecast_date: str, manifest: dict) -> Location:
    """Write the manifest of `forecast_date`: the commit record of the date.

    Adds `files` (table -> the committed file names, relative to the partition) for every partition
    that `write_partition` wrote for this date in this process (it updates `manifest` in place), writes
    the manifest in one step, and then deletes the old files those commits left on object stores.
    """
    loc = manifest_location(root, forecast_date)
    pending = _PENDING.pop(_key(root, forecast_date), {})
    if pending:
        manifest["files"] = {**manifest.get("files", {}), **{t: c.files for t, c in sorted(pending.items())}}
    try:
        write_json(loc, manifest)
    except Exception:
        for commit in pending.values():  # not committed: back to the old files (or the next run does it)
            _discard_uncommitted(commit)
        raise
    for table, commit in pending.items():
        if commit.stale:
            finish_commit(commit)
            log.info("deleted the old files of %s", partition(root, table, forecast_date).uri)
    return loc


def _discard_uncommitted(commit: Commit) -> None:
    if commit.final.is_local or not commit.stale:
        return  # local: the rename was the commit; nothing old left to go back to
    stale = set(commit.stale)
    for rel in commit.files:
        path = f"{commit.final.path}/{rel}"
        if path not in stale:
            try:
                commit.final.fs.delete_file(path)
            except Exception:
                log.warning("could not delete uncommitted %s/%s; the next run will", commit.final.uri, rel)


def committed_files(root: Location, table: str, forecast_date: str) -> list[str] | None:
    """The file names (relative to the partition) that the manifest of `forecast_date` lists for
    `table`; None when there is no manifest or it has no file list (written before file lists)."""
    loc = manifest_location(root, forecast_date)
    if not exists(loc):
        return None
    try:
        files = read_json(loc).get("files", {}).get(table)
    except (StorageError, ValueError, AttributeError) as exc:
        log.warning("%s: unreadable manifest (%s); no file list", loc.uri, exc)
        return None
    return list(files) if isinstance(files, list) else None


def committed_paths(root: Location, table: str, forecast_date: str) -> list[str]:
    """Paths on root.fs of the committed files of a partition, from the manifest: what a reader that
    needs strict atomicity on an object store reads (`pq.read_table(paths, filesystem=root.fs)`)."""
    files = committed_files(root, table, forecast_date)
    if files is None:
        raise StorageError(f"{manifest_location(root, forecast_date).uri}: no file list for {table}")
    final = partition(root, table, forecast_date)
    return [f"{final.path}/{f}" for f in files]
