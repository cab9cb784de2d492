"""Read: long Parquet rows (unique_id, ds, y) -> a Ray Dataset with one row per series.

The schema of every input file is checked on the driver first (file-level errors stop the job and
name the file and column). The rows themselves only ever move through Ray Data: each block is
turned into per-series lists with pyarrow, and series split across blocks are merged by a
groupby, so every series reaches the next step whole, with its points sorted by time.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from forecaster.config import Config
from forecaster.storage import Location, StorageError, list_parquet_files, resolve

log = logging.getLogger(__name__)

ID, DS, Y = "unique_id", "ds", "y"  # internal column names after renaming


class DataError(ValueError):
    """Input data cannot be used as a whole; the message names the file and column."""


def check_schema(cfg: Config) -> tuple[Location, list[str]]:
    """Find the input files and check that each has the configured columns with usable types."""
    loc = resolve(cfg.data.uri, cfg.data.storage_options)
    try:
        files = list_parquet_files(loc)
    except StorageError as exc:
        raise DataError(f"data.uri: {exc}") from None
    if not files:
        raise DataError(f"data.uri={cfg.data.uri}: no Parquet files found")
    for path in files:
        try:
            schema = pq.read_schema(path, filesystem=loc.fs)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
        _check_columns(path, schema, cfg)
    return loc, files


def _check_columns(path: str, schema: pa.Schema, cfg: Config) -> None:
    data = cfg.data
    expected = {
        data.id_col: ("data.id_col", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
                      or pa.types.is_integer(t) or pa.types.is_dictionary(t), "string or integer"),
        data.time_col: ("data.time_col", lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t),
                        "timestamp or date"),
        data.target_col: ("data.target_col", lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)
                          or pa.types.is_decimal(t), "float or integer"),
    }
    for column, (key, ok, what) in expected.items():
        if column not in schema.names:
            raise DataError(
                f"{path}: missing column {column!r} (set by {key}); columns are {schema.names}"
            )
        matches = schema.get_all_field_indices(column)
        if len(matches) > 1:  # schema.field() would raise a bare KeyError
            raise DataError(f"{path}: column {column!r} ({key}) appears {len(matches)} times")
        typ = schema.field(matches[0]).type
        if not ok(typ):
            raise DataError(f"{path}: column {column!r} ({key}) has type {typ}, expected {what}")


def read_series(cfg: Config, checked: tuple[Location, list[str]] | None = None) -> ray.data.Dataset:
    """The input as a Dataset of series rows: unique_id (str), ds (list<timestamp>), y (list<double>).

    `checked` is the result of `check_schema(cfg)` when the caller ran it already (before Ray).
    """
    loc, files = checked or check_schema(cfg)
    log.info("reading %d Parquet file(s) from %s", len(files), cfg.data.uri)
    columns = [cfg.data.id_col, cfg.data.time_col, cfg.data.target_col]
    _use_per_file_parquet_reader()
    # One read task (and block) per file, so that reading and grouping run on every CPU and the
    # blocks downstream (validate, the predictor actors) are as many as the files. Never more tasks
    # than files (the reader would split a file's rows, hence series, across blocks), nor more than
    # Ray's own default number of read blocks (beyond that, tasks only add overhead).
    tasks = min(len(files), ray.data.DataContext.get_current().read_op_min_num_blocks)
    rows = ray.data.read_parquet(files, filesystem=loc.fs, columns=columns, partitioning=None,
                                 override_num_blocks=tasks)
    rename = {cfg.data.id_col: ID, cfg.data.time_col: DS, cfg.data.target_col: Y}
    partial = rows.map_batches(
        _rows_to_series, fn_kwargs={"rename": rename}, batch_format="pyarrow", batch_size=None
    ).materialize()
    if _has_split_series(partial):
        log.info("some series span several blocks: merging them with a groupby")
        partial = partial.groupby(ID).map_groups(_merge_series, batch_format="pyarrow").materialize()
    return partial


def _use_per_file_parquet_reader() -> None:
    """Ray Data's V1 Parquet reader, which honours `override_num_blocks`.

    The V2 reader (Ray 2.60's default) ignores it and bin-packs up to 128 MiB of row groups into one
    read task: the 20 files of 5 000 series of bench/throughput.py became one task on one core, whose
    output was two blocks of 15 000 and 85 000 series, so one predictor actor did 85 % of the work.
    It also lists the files' footers in a task of its own (about 3 s here, mostly waiting).
    """
    ray.data.DataContext.get_current().use_datasource_v2 = False


def _rows_to_series(block: pa.Table, rename: dict[str, str]) -> pa.Table:
    """Long rows of one block -> one row per series, points sorted by ds."""
    block = block.rename_columns([rename[name] for name in block.column_names])
    ids = block[ID]
    if pa.types.is_dictionary(ids.type):
        ids = ids.cast(ids.type.value_type)
    ids = pc.cast(ids, pa.string())
    times = block[DS]
    if pa.types.is_date(times.type):
        times = pc.cast(times, pa.timestamp("us"))
    # tz-aware timestamps become naive UTC; all timestamps become microseconds
    times = times.cast(pa.timestamp("us"))
    values = pc.cast(block[Y], pa.float64()).combine_chunks()
    times = times.combine_chunks()
    # Group by the integer codes of the ids (a numeric lexsort is ~3x faster than sorting strings);
    # null ids form a group of their own, which validate rejects.
    codes = pc.dictionary_encode(ids.combine_chunks(), null_encoding="encode")
    code = codes.indices.to_numpy(zero_copy_only=False)
    order = np.lexsort((times.cast(pa.int64()).to_numpy(zero_copy_only=False), code))
    sorted_code = code[order]
    starts = np.flatnonzero(np.diff(sorted_code)) + 1 if len(order) else np.zeros(0, np.int64)
    offsets = pa.array(np.concatenate([[0], starts, [len(order)]]).astype(np.int32)) if len(order) else \
        pa.array([0], pa.int32())
    take = pa.array(order)
    return pa.table({
        ID: codes.dictionary.take(pa.array(sorted_code[offsets.to_numpy()[:-1]])),
        DS: pa.ListArray.from_arrays(offsets, times.take(take)),
        Y: pa.ListArray.from_arrays(offsets, values.take(take)),
    })


def _has_split_series(partial: ray.data.MaterializedDataset) -> bool:
    """Does an id occur in more than one row? Null ids count as one id, like a group of their own.

    Reads the id column of the materialised blocks where they lie (Arrow tables come out of the local
    object store without a copy) instead of streaming them through one more Ray Data execution, and
    counts with Arrow instead of a Python set: 0.02 s instead of 0.5 s for 100 000 series on 2 cores.
    """
    tables = ray.get(partial.to_arrow_refs())
    ids = pa.chunked_array([chunk for table in tables for chunk in table[ID].chunks], type=pa.string())
    return pc.count_distinct(ids, mode="all").as_py() != len(ids)


def _merge_series(group: pa.Table) -> pa.Table:
    """All partial rows of one series -> one row, points sorted by ds."""
    if group.num_rows == 1:
        return group
    times = pc.list_flatten(group[DS])
    values = pc.list_flatten(group[Y])
    order = np.argsort(times.to_numpy(zero_copy_only=False), kind="stable")
    return pa.table({
        ID: group[ID].slice(0, 1),
        DS: pa.array([times.take(order)], type=pa.list_(times.type)),
        Y: pa.array([values.take(order)], type=pa.list_(pa.float64())),
    })
