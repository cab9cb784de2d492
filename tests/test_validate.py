"""Per-series checks (forecaster.validate.validate_batch) on small tables shaped like read's output.

No Ray here: the series rows are built with `read.rows_to_series` (long rows -> one row per
series, points sorted by ds), which is what each Ray Data block goes through in the job.
"""

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from forecaster.features import window_stats
from forecaster.read import rows_to_series
from forecaster.validate import CHECKS, FLOAT32_MAX, min_length, validate_batch

HORIZON = 3
RUN_DATE = "2030-01-01"
RENAME = {"unique_id": "unique_id", "ds": "ds", "y": "y"}


def _long(uid, ds, y, id_type=pa.string()):
    ds = pd.DatetimeIndex(ds)
    return pa.table({
        "unique_id": pa.array([uid] * len(ds), type=id_type),
        "ds": pa.array(ds.as_unit("us")),
        "y": pa.array(np.asarray(y, dtype=object), type=pa.float64()),
    })


def _validate(*tables, freq="MS", horizon=HORIZON, run_date=RUN_DATE, rename=RENAME):
    series = rows_to_series(pa.concat_tables(tables), rename=rename)
    out = validate_batch(series, freq, horizon, run_date)
    return {row["unique_id"]: row for row in out.to_pylist()}


def _one(table, **kwargs):
    rows = _validate(table, **kwargs)
    assert len(rows) == 1
    return next(iter(rows.values()))


def _months(n, start="2020-01-01"):
    return pd.date_range(start, periods=n, freq="MS")


def _values(n):
    return np.arange(1.0, n + 1.0)


# ---------------------------------------------------------------- clean series

def test_clean_series_passes_with_first_last_length():
    row = _one(_long("a", _months(10), _values(10)))
    assert row["reject_reason"] is None and row["reject_detail"] is None
    assert row["first_ds"] == dt.datetime(2020, 1, 1)
    assert row["last_ds"] == dt.datetime(2020, 10, 1)
    assert row["length"] == 10
    assert row["y"] == list(_values(10))


def test_output_schema_and_ds_lists_dropped():
    series = rows_to_series(_long("a", _months(6), _values(6)), rename=RENAME)
    out = validate_batch(series, "MS", HORIZON, RUN_DATE)
    assert out.column_names == ["unique_id", "y", "first_ds", "last_ds", "length", "reject_reason", "reject_detail"]
    assert out.schema.field("first_ds").type == pa.timestamp("us")
    assert out.schema.field("reject_reason").type == pa.string()


def testrows_to_series_sorts_points_and_renames_columns():
    ds = _months(5)
    shuffled = pa.table({
        "series": ["b", "a", "b", "a", "a", "b", "a", "b", "a", "b"],
        "when": pa.array(list(ds[[3, 0, 0, 4, 2, 4, 1, 2, 3, 1]].as_unit("us"))),
        "value": pa.array([13, 0, 10, 4, 2, 14, 1, 12, 3, 11], type=pa.int32()),
    })
    series = rows_to_series(shuffled, rename={"series": "unique_id", "when": "ds", "value": "y"})
    assert series.schema.field("ds").type == pa.list_(pa.timestamp("us"))
    assert series.schema.field("y").type == pa.list_(pa.float64())
    rows = {r["unique_id"]: r for r in series.to_pylist()}
    assert rows["a"]["y"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert rows["b"]["y"] == [10.0, 11.0, 12.0, 13.0, 14.0]
    assert rows["a"]["ds"] == sorted(rows["a"]["ds"])
    rows = _validate(shuffled, rename={"series": "unique_id", "when": "ds", "value": "y"})
    assert {k: v["reject_reason"] for k, v in rows.items()} == {"a": None, "b": None}


def test_empty_batch_gives_empty_output():
    empty = rows_to_series(_long("a", _months(0), []), rename=RENAME)
    out = validate_batch(empty, "MS", HORIZON, RUN_DATE)
    assert out.num_rows == 0
    assert "reject_reason" in out.column_names


def test_clean_and_bad_series_in_one_batch_are_judged_separately():
    y_nan = _values(10)
    y_nan[4] = np.nan
    rows = _validate(
        _long("good", _months(10), _values(10)),
        _long("nan", _months(10), y_nan),
        _long("short", _months(4), _values(4)),
        _long("good2", _months(8, "2021-03-01"), _values(8)),
    )
    assert {k: v["reject_reason"] for k, v in rows.items()} == {
        "good": None, "nan": "non_finite_y", "short": "too_short", "good2": None,
    }
    assert rows["good2"]["first_ds"] == dt.datetime(2021, 3, 1)
    assert rows["good2"]["last_ds"] == dt.datetime(2021, 10, 1)


# ---------------------------------------------------------------- null_id

@pytest.mark.parametrize("uid", [None, ""], ids=["null", "empty"])
def test_null_id(uid):
    row = _one(_long(uid, _months(10), _values(10)))
    assert row["reject_reason"] == "null_id"
    assert "unique_id" in row["reject_detail"] and "null or empty" in row["reject_detail"]


# ---------------------------------------------------------------- non_finite_y

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, None], ids=["nan", "+inf", "-inf", "null"])
def test_non_finite_y(bad):
    y = list(_values(10))
    y[6] = bad
    row = _one(_long("a", _months(10), y))
    assert row["reject_reason"] == "non_finite_y"
    assert "1 non-finite y value(s)" in row["reject_detail"]
    assert "2020-07-01" in row["reject_detail"]  # names the first bad point


def test_non_finite_y_counts_every_bad_value():
    y = list(_values(10))
    y[2], y[5], y[9] = np.nan, None, np.inf
    row = _one(_long("a", _months(10), y))
    assert row["reject_reason"] == "non_finite_y"
    assert row["reject_detail"].startswith("3 non-finite") and "2020-03-01" in row["reject_detail"]


# ---------------------------------------------------------------- overflow_y

@pytest.mark.parametrize("big", [1e39, -1e39])
def test_overflow_y(big):
    y = _values(10)
    y[3] = big
    row = _one(_long("a", _months(10), y))
    assert row["reject_reason"] == "overflow_y"
    assert "1e+39" in row["reject_detail"] and "float32" in row["reject_detail"]


def test_float32_max_itself_is_not_overflow():
    y = _values(10)
    y[3] = FLOAT32_MAX
    assert _one(_long("a", _months(10), y))["reject_reason"] is None


# ---------------------------------------------------------------- duplicate_ds

def test_duplicate_ds():
    ds = list(_months(10)) + [pd.Timestamp("2020-04-01")]
    row = _one(_long("a", ds, _values(11)))
    assert row["reject_reason"] == "duplicate_ds"
    assert "1 duplicated timestamp(s)" in row["reject_detail"] and "2020-04-01" in row["reject_detail"]
    assert row["length"] == 11


def test_same_timestamp_in_two_series_is_not_a_duplicate():
    rows = _validate(_long("a", _months(10), _values(10)), _long("b", _months(10), _values(10)))
    assert [r["reject_reason"] for r in rows.values()] == [None, None]


# ---------------------------------------------------------------- irregular_timestamps

def test_irregular_gap():
    row = _one(_long("a", _months(10).delete(4), _values(9)))
    assert row["reject_reason"] == "irregular_timestamps"
    detail = row["reject_detail"]
    assert "after 2020-04-01" in detail and "expected 2020-05-01" in detail and "got 2020-06-01" in detail
    assert "data.freq=MS" in detail


def test_irregular_off_grid_first_point():
    ds = [pd.Timestamp("2020-01-15")] + list(_months(9, "2020-02-01"))
    row = _one(_long("a", ds, _values(10)))
    assert row["reject_reason"] == "irregular_timestamps"
    assert "2020-01-15" in row["reject_detail"] and "not on the data.freq=MS grid" in row["reject_detail"]


def test_irregular_off_grid_middle_point():
    ds = list(_months(10))
    ds[5] = pd.Timestamp("2020-06-15")
    row = _one(_long("a", ds, _values(10)))
    assert row["reject_reason"] == "irregular_timestamps"
    assert "got 2020-06-15" in row["reject_detail"]


def test_irregular_weekly_data_with_daily_freq():
    row = _one(_long("a", pd.date_range("2020-01-05", periods=10, freq="W"), _values(10)), freq="D")
    assert row["reject_reason"] == "irregular_timestamps"
    assert "expected 2020-01-06" in row["reject_detail"] and "got 2020-01-12" in row["reject_detail"]


def test_irregular_month_end_data_with_month_start_freq():
    row = _one(_long("a", pd.date_range("2020-01-31", periods=10, freq="ME"), _values(10)))
    assert row["reject_reason"] == "irregular_timestamps"
    assert "after 2020-01-31" in row["reject_detail"] and "expected 2020-02-01" in row["reject_detail"]


REGULAR = {
    "MS": pd.date_range("2015-01-01", periods=12, freq="MS"),
    "QS": pd.date_range("2015-01-01", periods=12, freq="QS"),
    "YS": pd.date_range("2000-01-01", periods=12, freq="YS"),
    "W": pd.date_range("2020-01-05", periods=12, freq="W"),  # W-SUN
    "D": pd.date_range("2020-02-20", periods=12, freq="D"),  # across 29 February
    "h": pd.date_range("2020-03-28 18:00", periods=12, freq="h"),
}


@pytest.mark.parametrize("freq", list(REGULAR))
def test_each_freq_accepts_a_regular_series(freq):
    ds = REGULAR[freq]
    row = _one(_long("a", ds, _values(len(ds))), freq=freq)
    assert row["reject_reason"] is None
    assert row["first_ds"] == ds[0].to_pydatetime() and row["last_ds"] == ds[-1].to_pydatetime()


@pytest.mark.parametrize("freq", list(REGULAR))
def test_each_freq_rejects_a_gapped_series(freq):
    ds = REGULAR[freq].delete(6)
    row = _one(_long("a", ds, _values(len(ds))), freq=freq)
    assert row["reject_reason"] == "irregular_timestamps"
    assert f"data.freq={freq}" in row["reject_detail"]


def test_weekly_data_on_the_wrong_weekday_is_off_grid():
    mondays = pd.date_range("2020-01-06", periods=10, freq="W-MON")
    row = _one(_long("a", mondays, _values(10)), freq="W")  # W means W-SUN
    assert row["reject_reason"] == "irregular_timestamps"
    assert _one(_long("a", mondays, _values(10)), freq="W-MON")["reject_reason"] is None


# ---------------------------------------------------------------- after_run_date

def test_after_run_date():
    row = _one(_long("a", _months(10), _values(10)), run_date="2020-05-01")
    assert row["reject_reason"] == "after_run_date"
    assert "2020-10-01" in row["reject_detail"] and "run.date=2020-05-01" in row["reject_detail"]


def test_points_on_the_run_date_itself_are_allowed():
    hours = pd.date_range("2020-01-09 00:00", periods=48, freq="h")  # ends 2020-01-10 23:00
    assert _one(_long("a", hours, _values(48)), freq="h", run_date="2020-01-10")["reject_reason"] is None
    row = _one(_long("a", hours, _values(48)), freq="h", run_date="2020-01-09")
    assert row["reject_reason"] == "after_run_date"


@pytest.mark.parametrize("start", ["9999-01-01", "2300-01-01"])
def test_far_future_timestamps_are_rejected_not_a_crash(start):
    # beyond the nanosecond range of pandas (2262): e.g. a 9999-12-31 "open end" sentinel
    ds = pd.DatetimeIndex(pd.date_range(start, periods=6, freq="MS", unit="us"))
    rows = _validate(_long("sentinel", ds, _values(6)), _long("good", _months(6), _values(6)))
    assert rows["sentinel"]["reject_reason"] == "after_run_date"
    assert rows["sentinel"]["first_ds"] == ds[0].to_pydatetime()
    assert rows["good"]["reject_reason"] is None


# ---------------------------------------------------------------- too_short

def test_too_short_boundary():
    assert min_length(HORIZON) == HORIZON + 2
    row = _one(_long("a", _months(HORIZON + 1), _values(HORIZON + 1)))
    assert row["reject_reason"] == "too_short"
    assert row["reject_detail"] == f"{HORIZON + 1} point(s); at least {HORIZON + 2} needed for model.horizon={HORIZON}"
    assert _one(_long("a", _months(HORIZON + 2), _values(HORIZON + 2)))["reject_reason"] is None


def test_single_point_series_is_too_short():
    row = _one(_long("a", _months(1), [5.0]), horizon=1)
    assert row["reject_reason"] == "too_short"
    assert row["first_ds"] == row["last_ds"] == dt.datetime(2020, 1, 1)


# ---------------------------------------------------------------- order of checks

def test_first_failing_check_wins():
    y = _values(3)
    y[1] = np.nan
    assert _one(_long("a", _months(3), y))["reject_reason"] == "non_finite_y"  # also too short


def test_order_of_checks_follows_reasons():
    # every problem at once except null_id: non_finite_y is reported
    ds = [pd.Timestamp("2020-01-15"), pd.Timestamp("2020-01-15"), pd.Timestamp("2031-01-01")]
    everything = _one(_long("a", ds, [np.nan, 1e39, 1.0]))
    assert everything["reject_reason"] == "non_finite_y"
    assert _one(_long(None, ds, [np.nan, 1e39, 1.0]))["reject_reason"] == "null_id"
    assert _one(_long("a", ds, [1.0, 1e39, 1.0]))["reject_reason"] == "overflow_y"
    assert _one(_long("a", ds, [1.0, 2.0, 1.0]))["reject_reason"] == "duplicate_ds"
    assert _one(_long("a", ds[1:], [2.0, 1.0]))["reject_reason"] == "irregular_timestamps"
    late = pd.date_range("2029-12-01", periods=3, freq="MS")
    assert _one(_long("a", late, [1.0, 2.0, 3.0]))["reject_reason"] == "after_run_date"
    assert CHECKS[-1] == "too_short"


# ---------------------------------------------------------------- plain data, not rejected

def test_constant_series_is_forecast_not_rejected():
    row = _one(_long("flat", _months(12), [7.0] * 12))
    assert row["reject_reason"] is None
    zero = _one(_long("zero", _months(12), [0.0] * 12))
    assert zero["reject_reason"] is None
    # the scaler falls back to a positive, finite scale on a flat window
    values = np.array([[7.0] * 12, [0.0] * 12, [-3.5] * 12])
    loc, scale = window_stats(values, np.ones_like(values), "robust")
    assert np.all(np.isfinite(loc)) and np.all(np.isfinite(scale)) and np.all(scale > 0)
    np.testing.assert_allclose(loc[:, 0], [7.0, 0.0, -3.5])


def test_negative_and_tiny_values_are_plain_data():
    y = np.array([-1e30, 1e-300, 0.0, -5.0, 3.0, 1e30, -2.0, 4.0, 0.5, -0.5])
    assert _one(_long("a", _months(10), y))["reject_reason"] is None


@pytest.mark.parametrize("uid", [
    "../x", "CA/store_1/item_9", "x" * 500, "Köln-日本", " padded ", "a,b;c", "NULL", "nan", "'; DROP TABLE y; --",
], ids=["dotdot", "slashes", "500chars", "non-ascii", "spaces", "separators", "NULL-text", "nan-text", "sql"])
def test_odd_ids_are_plain_data(uid):
    row = _one(_long(uid, _months(10), _values(10)))
    assert row["unique_id"] == uid
    assert row["reject_reason"] is None


def test_numeric_ids_become_strings():
    rows = _validate(
        _long(7, _months(10), _values(10), id_type=pa.int64()),
        _long(-12, _months(10), _values(10), id_type=pa.int64()),
    )
    assert set(rows) == {"7", "-12"}
    assert all(r["reject_reason"] is None for r in rows.values())


def test_dictionary_ids_become_strings():
    table = _long("store_1", _months(10), _values(10))
    table = table.set_column(0, "unique_id", table["unique_id"].dictionary_encode())
    rows = _validate(table)
    assert list(rows) == ["store_1"] and rows["store_1"]["reject_reason"] is None


def test_date_and_integer_columns_are_converted():
    table = pa.table({
        "unique_id": ["a"] * 8,
        "ds": pa.array([d.date() for d in _months(8)], type=pa.date32()),
        "y": pa.array(range(8), type=pa.int64()),
    })
    series = rows_to_series(table, rename=RENAME)
    assert series.schema.field("ds").type == pa.list_(pa.timestamp("us"))
    row = _one(table)
    assert row["reject_reason"] is None and row["y"] == [float(v) for v in range(8)]


def test_utc_timestamps_are_plain_data():
    ds = pd.date_range("2020-01-01", periods=8, freq="MS", tz="UTC")
    table = pa.table({"unique_id": ["a"] * 8, "ds": pa.array(ds), "y": _values(8)})
    row = _one(table)
    assert row["reject_reason"] is None and row["first_ds"] == dt.datetime(2020, 1, 1)


def test_local_time_zone_monthly_data_is_rejected_as_irregular():
    # known gap (docs/bad-inputs.md): read converts tz-aware timestamps to naive UTC, so local
    # midnights (Europe/Berlin: 23:00 UTC the day before) are off the MS grid
    ds = pd.date_range("2020-01-01", periods=8, freq="MS", tz="Europe/Berlin")
    table = pa.table({"unique_id": ["a"] * 8, "ds": pa.array(ds), "y": _values(8)})
    assert _one(table)["reject_reason"] == "irregular_timestamps"
