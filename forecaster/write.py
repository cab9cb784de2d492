"""Write: forecasts and rejects as Hive partitions `forecast_date=YYYY-MM-DD`, manifest last.

Each date's partition is written by Ray Data into a staging directory (`<table>/_staging/…`,
ignored by Parquet readers because of the leading underscore) and then committed over the old
partition of that date only; other dates are never touched. `write_parquet(mode="overwrite")` on
the table root is never used: it would delete every other date.
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from forecaster.storage import Location, commit_partition, staging_dir, write_json

log = logging.getLogger(__name__)

FORECASTS, REJECTS, MANIFESTS = "forecasts", "rejects", "manifests"
REJECT_SCHEMA = pa.schema([("unique_id", pa.string()), ("reason", pa.string()), ("detail", pa.string())])


def partition(root: Location, table: str, forecast_date: str) -> Location:
    return root.join(table, f"forecast_date={forecast_date}")


def write_partition(root: Location, table: str, forecast_date: str, rows: ray.data.Dataset,
                    empty_schema: pa.Schema) -> Location:
    """Write `rows` as the whole `forecast_date` partition of `table`, replacing an older one."""
    final = partition(root, table, forecast_date)
    staging = staging_dir(root.join(table), f"forecast_date={forecast_date}")
    staging.fs.create_dir(staging.path, recursive=True)
    rows.write_parquet(staging.path, filesystem=staging.fs)
    if not _has_files(staging):
        # An empty result is still a committed partition: readers see the schema and zero rows.
        pq.write_table(empty_schema.empty_table(), f"{staging.path}/part-0.parquet", filesystem=staging.fs)
    commit_partition(staging, final)
    log.info("committed %s", final.uri)
    return final


def _has_files(loc: Location) -> bool:
    import pyarrow.fs as pafs

    infos = loc.fs.get_file_info(pafs.FileSelector(loc.path, recursive=True, allow_not_found=True))
    return any(i.type == pafs.FileType.File for i in infos)


def write_manifest(root: Location, forecast_date: str, manifest: dict) -> Location:
    loc = root.join(MANIFESTS, f"forecast_date={forecast_date}.json")
    write_json(loc, manifest)
    return loc
