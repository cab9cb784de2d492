"""Write: forecasts and rejects as Hive partitions `forecast_date=YYYY-MM-DD`, manifest last.

Each date's partition is written by Ray Data into a staging directory (`<table>/_staging/…`,
ignored by Parquet readers because of the leading underscore) and then committed over the old
partition of that date only; other dates are never touched. `write_parquet(mode="overwrite")` on
the table root is never used: it would delete every other date.

A reader sees a date's partition complete, old or new, never a mix (docs/reliability.md):

- local filesystems: the staging directory replaces the partition in one atomic rename;
- object stores (no rename): the staged files are copied in next to the old ones under names unique
  to the attempt, then a commit record `<table>/_commits/forecast_date=D.json` listing the new files
  is written in one PUT (the commit point), then the old files are deleted. A reader that lists the
  prefix may see old and new files together while a commit runs; a reader that needs strict
  atomicity reads the file list (`committed_paths`) instead.

The manifest, written last, lists the committed files of each table (`files`). Before staging,
`write_partition` repairs what a crashed earlier attempt of the same date left
(`commit.recover_partition`).
"""

from __future__ import annotations

import logging
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from forecaster.columns import MODEL, partition_name
from forecaster.commit import commit_partition, recover_partition, staging_dir
from forecaster.storage import (
    TRANSIENT_PATTERNS,
    Location,
    StorageError,
    exists,
    list_parquet_files,
    read_json,
    retry,
    write_json,
)

log = logging.getLogger(__name__)

FORECASTS, REJECTS, SCORES, MANIFESTS = "forecasts", "rejects", "scores", "manifests"
COMMITS = "_commits"  # per table: the commit records of object-store partitions (hidden from readers)


def partition(root: Location, table: str, forecast_date: str) -> Location:
    return root.join(table, partition_name(forecast_date))


def manifest_location(root: Location, forecast_date: str) -> Location:
    return root.join(MANIFESTS, partition_name(forecast_date, ".json"))


def commit_record(root: Location, table: str, forecast_date: str) -> Location:
    return root.join(table, COMMITS, partition_name(forecast_date, ".json"))


def write_partition(root: Location, table: str, forecast_date: str, rows: ray.data.Dataset,
                    empty_schema: pa.Schema) -> Location:
    """Write `rows` as the whole `forecast_date` partition of `table`, replacing an older one."""
    def fill(staging: Location) -> None:
        _retry_transient_write_errors()
        rows.write_parquet(staging.path, filesystem=staging.fs)  # file names carry Ray Data's write UUID
        if not _has_files(staging):
            # An empty result is still a committed partition: readers see the schema and zero rows.
            empty = f"{staging.path}/empty-{uuid.uuid4().hex}.parquet"
            retry(lambda: pq.write_table(empty_schema.empty_table(), empty, filesystem=staging.fs), staging.uri,
                  "write the empty partition file")

    return _stage_and_commit(root, table, forecast_date, fill)


def write_files(root: Location, table: str, forecast_date: str, tables: dict[str, pa.Table],
                documents: dict[str, dict]) -> Location:
    """Write small driver-side results (`name.parquet` per table, `name.json` per document) as the whole
    `forecast_date` partition of `table`, committed like `write_partition`."""
    def fill(staging: Location) -> None:
        for name, rows in tables.items():
            path = f"{staging.path}/{name}.parquet"
            retry(lambda rows=rows, path=path: pq.write_table(rows, path, filesystem=staging.fs), staging.uri,
                  f"write {name}.parquet")
        for name, payload in documents.items():
            write_json(staging.join(f"{name}.json"), payload)

    return _stage_and_commit(root, table, forecast_date, fill)


def _stage_and_commit(root: Location, table: str, forecast_date: str, fill) -> Location:
    """Repair a crashed earlier attempt, let `fill(staging)` write the partition, commit it."""
    final = partition(root, table, forecast_date)
    name = partition_name(forecast_date)
    record = None if root.is_local else commit_record(root, table, forecast_date)
    recover_partition(root.join(table), name, None if record is None else _record_files(record))
    staging = staging_dir(root.join(table), name)
    retry(lambda: staging.fs.create_dir(staging.path, recursive=True), staging.uri, "create the staging directory")
    fill(staging)
    files = commit_partition(staging, final, record=record)
    log.info("committed %s (%d files)", final.uri, len(files))
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


def count_models(partition: Location, horizon: int) -> dict[str, int]:
    """Series per model in a committed forecast partition (reads only the `model` column)."""
    import pyarrow.dataset as pads

    table = pads.dataset(partition.path, filesystem=partition.fs, format="parquet").to_table(columns=[MODEL])
    counts = table.group_by(MODEL).aggregate([(MODEL, "count")]).to_pydict()
    return {name: count // horizon for name, count in zip(counts[MODEL], counts[f"{MODEL}_count"], strict=True)}


def write_manifest(root: Location, forecast_date: str, manifest: dict) -> Location:
    """Write the manifest of `forecast_date` in one step (a reader finds the old or the new one).

    Adds `files`: for each table that has a partition for the date, its committed file names relative
    to the partition (updates `manifest` in place).
    """
    files = {}
    for table in (FORECASTS, REJECTS, SCORES):
        committed = committed_files(root, table, forecast_date)
        if committed is not None:
            files[table] = committed
    if files:
        manifest["files"] = files
    loc = manifest_location(root, forecast_date)
    write_json(loc, manifest)
    return loc


def _record_files(record: Location) -> list[str] | None:
    if not exists(record):
        return None
    try:
        files = read_json(record).get("files")
    except (StorageError, ValueError, AttributeError) as exc:
        log.warning("%s: unreadable commit record (%s); ignored", record.uri, exc)
        return None
    return list(files) if isinstance(files, list) else None


def committed_files(root: Location, table: str, forecast_date: str) -> list[str] | None:
    """The committed files of a partition, relative to it; None if the date has no partition.

    Local filesystems: the files of the partition directory (it is replaced in one rename). Object
    stores: the list in the partition's commit record (files that a commit in progress copied in, or
    has not yet deleted, are not in it), or the listing for partitions written without a record.
    """
    final = partition(root, table, forecast_date)
    if not root.is_local:
        files = _record_files(commit_record(root, table, forecast_date))
        if files is not None:
            return files
    if not exists(final):
        return None
    return sorted(p[len(final.path) + 1:] for p in list_parquet_files(final))


def committed_paths(root: Location, table: str, forecast_date: str) -> list[str]:
    """Paths on root.fs of the committed files of a partition: what a reader that needs strict atomicity
    on an object store reads (`pq.read_table(paths, filesystem=root.fs)`). A path that is gone by the
    time it is opened means a newer commit replaced the partition meanwhile: ask again."""
    files = committed_files(root, table, forecast_date)
    if files is None:
        raise StorageError(f"{partition(root, table, forecast_date).uri}: no such partition")
    final = partition(root, table, forecast_date)
    return [f"{final.path}/{f}" for f in files]
