"""forecaster.read.check_schema: file-level problems stop the job before any work (no Ray here).

Every error is a DataError whose message names the file (or data.uri) and the column / config key.
"""

import os
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forecaster.config import load_config
from forecaster.read import DataError, check_schema


def _table(n=6, **columns):
    base = {
        "unique_id": pa.array(["a"] * n, type=pa.string()),
        "ds": pa.array(pd.date_range("2020-01-01", periods=n, freq="MS").as_unit("us")),
        "y": pa.array([float(i) for i in range(n)], type=pa.float64()),
    }
    base.update(columns)
    return pa.table({k: v for k, v in base.items() if v is not None})


def _write(path, table=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table if table is not None else _table(), path)
    return path


def _check(uri, *overrides):
    return check_schema(load_config(None, [f"data.uri={uri}", *overrides]))


def _error(uri, *overrides):
    with pytest.raises(DataError) as err:
        _check(uri, *overrides)
    return str(err.value)


# ---------------------------------------------------------------- accepted


def test_single_file_passes(tmp_path):
    path = _write(tmp_path / "data.parquet")
    loc, files = _check(path)
    assert files == [str(path)] and loc.is_local


def test_hive_directory_of_several_files_passes(tmp_path):
    paths = [_write(tmp_path / f"region=r{i}" / f"part-{j}.parquet") for i in range(3) for j in range(2)]
    (tmp_path / "_SUCCESS").write_text("")  # writer markers and hidden files are skipped
    (tmp_path / "region=r0" / ".part-0.parquet.crc").write_text("crc")
    _write(tmp_path / "_staging" / "old.parquet", _table(y=None))  # would fail the check if read
    _, files = _check(tmp_path)
    assert files == sorted(str(p) for p in paths)


def test_renamed_columns_via_config(tmp_path):
    table = _table().rename_columns(["series", "when", "sales"])
    path = _write(tmp_path / "data.parquet", table)
    assert "data.id_col" in _error(path)
    _, files = _check(path, "data.id_col=series", "data.time_col=when", "data.target_col=sales")
    assert files == [str(path)]


@pytest.mark.parametrize("name,column", [
    ("int_id", {"unique_id": pa.array(range(6), type=pa.int64())}),
    ("dictionary_id", {"unique_id": pa.array(["a"] * 6).dictionary_encode()}),
    ("large_string_id", {"unique_id": pa.array(["a"] * 6, type=pa.large_string())}),
    ("date_ds", {"ds": pa.array(pd.date_range("2020-01-01", periods=6, freq="MS").date, type=pa.date32())}),
    ("ns_ds", {"ds": pa.array(pd.date_range("2020-01-01", periods=6, freq="MS").as_unit("ns"))}),
    ("utc_ds", {"ds": pa.array(pd.date_range("2020-01-01", periods=6, freq="MS", tz="UTC"))}),
    ("int_y", {"y": pa.array(range(6), type=pa.int32())}),
    ("float32_y", {"y": pa.array([1.0] * 6, type=pa.float32())}),
    ("decimal_y", {"y": pa.array([Decimal("1.25")] * 6, type=pa.decimal128(10, 2))}),
])
def test_usable_column_types_pass(tmp_path, name, column):
    path = _write(tmp_path / f"{name}.parquet", _table(**column))
    assert _check(path)[1] == [str(path)]


def test_extra_columns_are_ignored(tmp_path):
    path = _write(tmp_path / "data.parquet", _table(store=pa.array(["s"] * 6), price=pa.array([1.0] * 6)))
    assert _check(path)[1] == [str(path)]


def test_empty_parquet_file_with_the_right_schema_passes(tmp_path):
    path = _write(tmp_path / "data.parquet", _table(0))
    assert _check(path)[1] == [str(path)]


# ---------------------------------------------------------------- stopped: where the data is


def test_missing_path(tmp_path):
    message = _error(tmp_path / "nope.parquet")
    assert "data.uri" in message and "nope.parquet" in message and "no such file" in message


def test_directory_without_parquet_files(tmp_path):
    message = _error(tmp_path)
    assert f"data.uri={tmp_path}" in message and "no Parquet files" in message


def test_directory_with_only_hidden_files(tmp_path):
    (tmp_path / "_SUCCESS").write_text("")
    _write(tmp_path / ".hidden" / "part.parquet")
    assert "no Parquet files" in _error(tmp_path)


@pytest.mark.parametrize("content", [b"this is not parquet\n", b"", b"PAR1" + b"\0" * 100],
                         ids=["text", "empty", "bad-footer"])
def test_file_that_is_not_parquet(tmp_path, content):
    path = tmp_path / "x.parquet"
    path.write_bytes(content)
    message = _error(path)
    assert str(path) in message and "not a readable Parquet file" in message


def test_one_bad_file_in_a_directory_stops_the_job_and_is_named(tmp_path):
    _write(tmp_path / "region=a" / "part.parquet")
    bad = tmp_path / "region=b" / "part.parquet"
    bad.parent.mkdir()
    bad.write_text("not parquet")
    message = _error(tmp_path)
    assert str(bad) in message and "region=a" not in message


def test_non_parquet_file_in_a_directory_stops_the_job(tmp_path):
    # every non-hidden file under data.uri is read as Parquet (see docs/bad-inputs.md)
    _write(tmp_path / "part.parquet")
    (tmp_path / "README.txt").write_text("about this data")
    message = _error(tmp_path)
    assert "README.txt" in message and "not a readable Parquet file" in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path):
    path = _write(tmp_path / "data.parquet")
    path.chmod(0)
    try:
        message = _error(path)
    finally:
        path.chmod(0o644)
    assert str(path) in message


# ---------------------------------------------------------------- stopped: columns


@pytest.mark.parametrize("column,key", [
    ("unique_id", "data.id_col"), ("ds", "data.time_col"), ("y", "data.target_col"),
])
def test_missing_column(tmp_path, column, key):
    path = _write(tmp_path / "data.parquet", _table(**{column: None}))
    message = _error(path)
    assert str(path) in message and f"missing column {column!r}" in message and key in message
    assert "columns are" in message


def test_missing_column_in_one_file_of_many(tmp_path):
    _write(tmp_path / "region=a" / "part.parquet")
    bad = _write(tmp_path / "region=b" / "part.parquet", _table(y=None))
    message = _error(tmp_path)
    assert str(bad) in message and "'y'" in message and "data.target_col" in message


@pytest.mark.parametrize("column,key,values,typ", [
    ("y", "data.target_col", pa.array(["1.5"] * 6), "string"),
    ("y", "data.target_col", pa.array([True] * 6), "bool"),
    ("ds", "data.time_col", pa.array(range(6), type=pa.int64()), "int64"),
    ("ds", "data.time_col", pa.array(["2020-01-01"] * 6), "string"),
    ("unique_id", "data.id_col", pa.array([1.0] * 6), "double"),
    ("unique_id", "data.id_col", pa.nulls(6), "null"),
    ("unique_id", "data.id_col", pa.array([b"a"] * 6, type=pa.binary()), "binary"),
], ids=["y-string", "y-bool", "ds-int64", "ds-string", "id-double", "id-all-null", "id-binary"])
def test_unusable_column_type(tmp_path, column, key, values, typ):
    path = _write(tmp_path / "data.parquet", _table(**{column: values}))
    message = _error(path)
    assert str(path) in message and f"column {column!r}" in message and key in message
    assert f"has type {typ}" in message


def test_duplicated_column_name(tmp_path):
    good = _table()
    table = pa.Table.from_arrays([good["unique_id"], good["ds"], good["y"], good["y"]],
                                 names=["unique_id", "ds", "y", "y"])
    path = _write(tmp_path / "data.parquet", table)
    message = _error(path)
    assert str(path) in message and "'y'" in message and "data.target_col" in message and "2 times" in message


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)

