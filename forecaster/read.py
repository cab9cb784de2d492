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

from forecaster.columns import DS, FUTURE, HORIZON, ID, PAST, STATIC, Y
from forecaster.config import Config
from forecaster.storage import Location, StorageError, list_parquet_files, resolve

log = logging.getLogger(__name__)


class DataError(ValueError):
    """Input data cannot be used as a whole; the message names the file and column."""


def check_schema(cfg: Config) -> tuple[Location, list[str]]:
    """Find the input files and check that each has the configured columns with usable types."""
    loc, files = _parquet_files(cfg.data.uri, "data.uri", cfg.data.storage_options)
    for path in files:
        _check_columns(path, _schema(loc, path), cfg)
    return loc, files


def _parquet_files(uri: str, key: str, storage_options: dict) -> tuple[Location, list[str]]:
    loc = resolve(uri, storage_options)
    try:
        files = list_parquet_files(loc)
    except StorageError as exc:
        raise DataError(f"{key}: {exc}") from None
    if not files:
        raise DataError(f"{key}={uri}: no Parquet files found")
    return loc, files


def _schema(loc: Location, path: str) -> pa.Schema:
    try:
        return pq.read_schema(path, filesystem=loc.fs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None


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
    for key, column, ok, what in covariate_columns(cfg, input_only=True):
        _check_column(path, schema, column, key, ok, what)


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_boolean(t)


def _scalar(t: pa.DataType) -> bool:
    return _numeric(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)


def covariate_columns(cfg: Config, input_only: bool = False) -> list[tuple]:
    """(config key, column, type check, expected) of every covariate column the input must hold."""
    data = cfg.data
    out = [(f"data.{key}", c, _numeric, "numeric") for key in ("past_covariates", "future_covariates")
           for c in getattr(data, key)]
    if not (input_only and data.static_uri):
        out += [("data.static_covariates", c, _scalar, "number, boolean or text") for c in data.static_covariates]
    return out


def _check_column(path: str, schema: pa.Schema, column: str, key: str, ok, what: str) -> None:
    if column not in schema.names:
        raise DataError(f"{path}: missing column {column!r} (listed in {key}); columns are {schema.names}")
    typ = schema.field(column).type
    if not ok(typ):
        raise DataError(f"{path}: column {column!r} ({key}) has type {typ}, expected {what}")


def read_series(cfg: Config, checked: tuple[Location, list[str]] | None = None) -> ray.data.Dataset:
    """The input as a Dataset of series rows: unique_id (str), ds (list<timestamp>), y (list<double>).

    `checked` is the result of `check_schema(cfg)` when the caller ran it already (before Ray).
    """
    loc, files = checked or check_schema(cfg)
    log.info("reading %d Parquet file(s) from %s", len(files), cfg.data.uri)
    rename = {cfg.data.id_col: ID, cfg.data.time_col: DS, cfg.data.target_col: Y}
    rename.update({c: PAST + c for c in cfg.data.past_covariates})
    rename.update({c: FUTURE + c for c in cfg.data.future_covariates})
    if not cfg.data.static_uri:
        rename.update({c: STATIC + c for c in cfg.data.static_covariates})
    _use_per_file_parquet_reader()
    # One read task (and block) per file, so that reading and grouping run on every CPU and the
    # blocks downstream (validate, the predictor actors) are as many as the files. Never more tasks
    # than files (the reader would split a file's rows, hence series, across blocks), nor more than
    # Ray's own default number of read blocks (beyond that, tasks only add overhead).
    tasks = min(len(files), ray.data.DataContext.get_current().read_op_min_num_blocks)
    rows = ray.data.read_parquet(files, filesystem=loc.fs, columns=list(rename), partitioning=None,
                                 override_num_blocks=tasks)
    partial = rows.map_batches(
        rows_to_series, fn_kwargs={"rename": rename}, batch_format="pyarrow", batch_size=None
    ).materialize()
    if _has_split_series(partial):
        log.info("some series span several blocks: merging them with a groupby")
        partial = partial.groupby(ID).map_groups(_merge_series, batch_format="pyarrow").materialize()
    return partial


def _use_per_file_parquet_reader() -> None:
    """Ray Data's V1 Parquet reader, which honours `override_num_blocks`.

    The V2 reader (Ray 2.60's default) ignores it and bin-packs up to 128 MiB of row groups into one
    read task, so a few large blocks reach the predictors and one actor does most of the work; it
    also lists the files' footers in a task of its own (docs/benchmarks.md has the figures).
    """
    ray.data.DataContext.get_current().use_datasource_v2 = False


def rows_to_series(block: pa.Table, rename: dict[str, str]) -> pa.Table:
    """Long rows of one block -> one row per series, points sorted by ds; every other column
    (covariates) becomes a list column aligned with y (numeric ones as float64)."""
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
    columns = {
        ID: codes.dictionary.take(pa.array(sorted_code[offsets.to_numpy()[:-1]])),
        DS: pa.ListArray.from_arrays(offsets, times.take(take)),
        Y: pa.ListArray.from_arrays(offsets, values.take(take)),
    }
    for name in block.column_names:
        if name.startswith((PAST, FUTURE, STATIC)):
            column = block[name].combine_chunks()
            if name.startswith((PAST, FUTURE)):
                column = pc.cast(column, pa.float64())
            elif pa.types.is_dictionary(column.type):
                column = column.cast(column.type.value_type)
            columns[name] = pa.ListArray.from_arrays(offsets, column.take(take))
    return pa.table(columns)


def _has_split_series(partial: ray.data.MaterializedDataset) -> bool:
    """Does an id occur in more than one row? Null ids count as one id, like a group of their own.

    One small task per materialised block takes its id column where the block lies (on a cluster
    only the ids travel to the driver, never the series), instead of streaming the blocks through
    one more Ray Data execution; Arrow counts them instead of a Python set. The tasks take one CPU
    each: zero-CPU tasks would make Ray start a worker process for every block at once.
    """
    columns = ray.get([_id_column.remote(block) for block in partial.to_arrow_refs()])
    ids = pa.chunked_array([chunk for column in columns for chunk in column.chunks], type=pa.string())
    return pc.count_distinct(ids, mode="all").as_py() != len(ids)


@ray.remote  # one CPU each: zero-CPU tasks would start a worker process per block at once
def _id_column(block: pa.Table) -> pa.ChunkedArray:
    return block[ID]


def _merge_series(group: pa.Table) -> pa.Table:
    """All partial rows of one series -> one row, points sorted by ds."""
    if group.num_rows == 1:
        return group
    times = pc.list_flatten(group[DS])
    order = pa.array(np.argsort(times.to_numpy(zero_copy_only=False), kind="stable"))
    merged = {ID: group[ID].slice(0, 1)}
    for name in [c for c in group.column_names if c != ID]:  # ds, y and covariate lists
        flat = pc.list_flatten(group[name])
        merged[name] = pa.array([flat.take(order)], type=pa.list_(flat.type))
    return pa.table(merged)


def read_side_table(cfg: Config, kind: str) -> pa.Table | None:
    """data.static_uri (kind="static") or data.future_uri (kind="future") as one Arrow table with
    internal column names, read on the driver: these tables hold one row per series (static) or
    per series and horizon step (future), far less than the history.

    static: unique_id, static:<col> ...      future: unique_id, ds, horizon:<col> ...
    """
    data = cfg.data
    uri = data.static_uri if kind == "static" else data.future_uri
    if not uri:
        return None
    key = f"data.{kind}_uri"
    names = data.static_covariates if kind == "static" else data.future_covariates
    wanted = [data.id_col] + ([] if kind == "static" else [data.time_col]) + list(names)
    loc, files = _parquet_files(uri, key, data.storage_options)
    for path in files:
        schema = _schema(loc, path)
        _check_column(path, schema, data.id_col, "data.id_col", lambda t: _scalar(t) and not pa.types.is_floating(t),
                      "string or integer")
        if kind == "future":
            _check_column(path, schema, data.time_col, "data.time_col",
                          lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t), "timestamp or date")
        for name in names:
            _check_column(path, schema, name, f"data.{kind}_covariates", _numeric if kind == "future" else _scalar,
                          "numeric" if kind == "future" else "number, boolean or text")
    table = pa.concat_tables([pq.read_table(p, columns=wanted, filesystem=loc.fs) for p in files],
                             promote_options="permissive")
    prefix = STATIC if kind == "static" else HORIZON
    columns = {ID: pc.cast(table[data.id_col], pa.string())}
    if kind == "future":
        columns[DS] = pc.cast(table[data.time_col], pa.timestamp("us"))
    for name in names:
        column = table[name]
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        columns[prefix + name] = pc.cast(column, pa.float64()) if kind == "future" else column
    out = pa.table(columns)
    keys = [ID] if kind == "static" else [ID, DS]
    counts = out.group_by(keys).aggregate([([], "count_all")])
    repeated = counts.filter(pc.greater(counts["count_all"], 1))
    if repeated.num_rows:
        example = {k: repeated[k][0].as_py() for k in keys}
        raise DataError(f"{key}={uri}: {repeated.num_rows} key(s) appear more than once, e.g. {example}")
    return out
