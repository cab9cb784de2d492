"""Covariates without Ray: calendar features, static encodings, windows (no look-ahead per kind),
the model's extra inputs, the reject reasons of covariates and the side-table joins."""

import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray.train
import torch

from forecaster import checkpoint
from forecaster.config import ConfigError, load_config
from forecaster.covariates import (
    FeatureSpec,
    calendar_anchor,
    calendar_features,
    calendar_kind,
    feature_spec,
    static_buckets,
    static_numeric,
)
from forecaster.features import SeriesBlock, forecast_windows, make_windows, training_windows, window_stats
from forecaster.model import build_model, masked_loss, member_mean
from forecaster.predict import SeriesPredictor
from forecaster.read import rows_to_series
from forecaster.validate import attach_side_tables, validate_batch
from tests.specs import model_spec

# ---------------------------------------------------------------- calendar

@pytest.mark.parametrize("freq,kind", [("MS", "month"), ("ME", "month"), ("QS", "quarter"), ("W", "week"),
                                       ("D", "day"), ("h", "hour"), ("YS", None), ("B", None)])
def test_calendar_kind_follows_the_frequency(freq, kind):
    assert calendar_kind(freq, "auto") == kind
    assert calendar_kind(freq, "none") is None


def test_month_features_are_exact_for_every_step():
    first = np.array(["2019-11-01"], dtype="datetime64[us]")
    anchor, step = calendar_anchor(first, "month", "MS")
    months = anchor[0] + np.arange(4) * step  # Nov, Dec, Jan, Feb
    features = calendar_features(months, "month")
    expected = np.array([10, 11, 0, 1])
    np.testing.assert_allclose(features[:, 0], np.sin(2 * np.pi * expected / 12), atol=1e-12)
    np.testing.assert_allclose(features[:, 1], np.cos(2 * np.pi * expected / 12), atol=1e-12)


def test_day_features_know_the_weekday():
    first = np.array(["2024-01-01"], dtype="datetime64[us]")  # a Monday
    anchor, step = calendar_anchor(first, "day", "D")
    features = calendar_features(anchor[0] + np.arange(7) * step, "day")
    weekday = np.arange(7)  # Monday .. Sunday
    np.testing.assert_allclose(features[:, 0], np.sin(2 * np.pi * weekday / 7), atol=1e-12)
    np.testing.assert_allclose(features[:, 3], np.cos(2 * np.pi * np.arange(7) / 365.25), atol=1e-12)


def test_hour_features_know_the_time_of_day():
    first = np.array(["2024-01-01T22:00"], dtype="datetime64[us]")
    anchor, step = calendar_anchor(first, "hour", "h")
    features = calendar_features(anchor[0] + np.arange(3) * step, "hour")  # 22:00, 23:00, 00:00
    np.testing.assert_allclose(features[:, 0], np.sin(2 * np.pi * np.array([22, 23, 0]) / 24), atol=1e-12)


# ---------------------------------------------------------------- statics

def test_static_buckets_are_stable_hashes():
    buckets = static_buckets(pa.array(["a", "b", "a", None]), "store", 1000)
    assert buckets[0] == buckets[2] == zlib.crc32(b"store=a") % 1000
    assert buckets[1] == zlib.crc32(b"store=b") % 1000
    assert buckets[3] == zlib.crc32(b"store=None") % 1000
    # the same value in another column lands elsewhere (a column's name is part of the key)
    assert static_buckets(pa.array(["a"]), "region", 10**6)[0] != static_buckets(pa.array(["a"]), "store", 10**6)[0]


def test_static_numeric_is_signed_log():
    np.testing.assert_allclose(static_numeric(pa.array([0.0, np.e - 1, -(np.e - 1)])), [0.0, 1.0, -1.0])


def test_feature_spec_splits_statics_by_type():
    cfg = load_config(None, ["data.static_covariates=[store, size]", "data.past_covariates=[temp]"])
    schema = pa.schema([("static:store", pa.string()), ("static:size", pa.float64())])
    spec = feature_spec(cfg, schema)
    assert spec.static_categorical == ["store"] and spec.static_numeric == ["size"]
    assert spec.past == ["temp"] and spec.calendar == "month"


# ---------------------------------------------------------------- windows: no look-ahead per kind

LENGTH, INPUT, H = 30, 6, 4


def _block(past=None, future=None, statics=None, calendar=None, horizon_values=None):
    rng = np.random.default_rng(0)
    y = rng.normal(100, 10, LENGTH)
    spec = FeatureSpec(past=["p"] if past is not None else [], future=["f"] if future is not None else [],
                       static_numeric=["s"] if statics is not None else [], calendar=calendar)
    columns = [c for c in (past, future) if c is not None]
    block = SeriesBlock([y], spec=spec, covariates=np.stack(columns, axis=-1) if columns else None,
                        horizon_values=horizon_values,
                        static_num=None if statics is None else np.array([[statics]]))
    if calendar:
        block.anchor, block.step = calendar_anchor(np.array(["2015-01-01"], dtype="datetime64[us]"), calendar, "MS")
    return block


def _spec(block=None, **fields):
    """The default model's spec for these windows, reading the covariates of `block` (robust scaling)."""
    features = block.spec if block is not None else FeatureSpec()
    return model_spec(f"model.horizon={H}", f"model.input_size={INPUT}", "model.hidden_size=8", "model.num_layers=1",
                      "model.dropout=0", "model.scaler_type=robust", **{"features": features, **fields})


def _window(block, cutoff=20):
    return make_windows(block, np.array([0]), np.array([cutoff]), np.array([LENGTH]), _spec(block))


def test_past_covariate_is_seen_over_the_input_window_only():
    past = np.arange(LENGTH, dtype=float) ** 1.5
    base = _window(_block(past=past))
    later = past.copy()
    later[20:] = 1e6  # at and after the cutoff: must not reach the window
    np.testing.assert_array_equal(_window(_block(past=later)).steps, base.steps)
    earlier = past.copy()
    earlier[17] = -50.0  # inside the input window: must reach it
    assert not np.array_equal(_window(_block(past=earlier)).steps, base.steps)
    assert base.ahead.shape == (1, H, 0)  # a past covariate has no horizon part


def test_future_covariate_is_seen_up_to_the_horizon_and_scaled_by_the_input_window():
    future = np.sin(np.arange(LENGTH, dtype=float))
    base = _window(_block(future=future))
    assert base.steps.shape == (1, INPUT, 1) and base.ahead.shape == (1, H, 1)
    beyond = future.copy()
    beyond[24:] = 1e6  # after cutoff + horizon
    other = _window(_block(future=beyond))
    np.testing.assert_array_equal(other.steps, base.steps)
    np.testing.assert_array_equal(other.ahead, base.ahead)
    inside = future.copy()
    inside[22] = 1e6  # a horizon step: reaches `ahead` but not the scaling of the inputs
    changed = _window(_block(future=inside))
    np.testing.assert_array_equal(changed.steps, base.steps)
    assert changed.ahead[0, 2, 0] > 1e3 and np.array_equal(changed.ahead[0, [0, 1, 3]], base.ahead[0, [0, 1, 3]])


def test_training_windows_never_see_past_the_training_part():
    past = np.arange(LENGTH, dtype=float)
    future = np.cos(np.arange(LENGTH, dtype=float))
    block = _block(past=past, future=future)
    a = training_windows(block, _spec(block), 16, np.random.default_rng(1))
    past2, future2 = past.copy(), future.copy()
    past2[LENGTH - H:], future2[LENGTH - H:] = 1e6, 1e6  # the validation part
    b = training_windows(_block(past=past2, future=future2), _spec(block), 16, np.random.default_rng(1))
    np.testing.assert_array_equal(a.steps, b.steps)
    np.testing.assert_array_equal(a.ahead, b.ahead)


def test_forecast_window_takes_future_values_from_the_side_table():
    future = np.arange(LENGTH, dtype=float)
    ahead = np.array([[[100.0], [200.0], [300.0], [400.0]]])  # (series, horizon, future covariates)
    block = _block(future=future, horizon_values=ahead)
    w = forecast_windows(block, _spec(block))
    observed = future[-INPUT:]
    loc = np.median(observed)
    scale = np.quantile(observed, 0.75) - np.quantile(observed, 0.25)
    np.testing.assert_allclose(w.ahead[0, :, 0], (ahead[0, :, 0] - loc) / scale)


def test_static_and_calendar_features_reach_every_window():
    block = _block(statics=3.0, calendar="month")
    w = training_windows(block, _spec(block), 5, np.random.default_rng(0))
    assert w.static_num.shape == (5, 1) and np.all(w.static_num == 3.0)
    assert w.steps.shape == (5, INPUT, 2) and w.ahead.shape == (5, H, 2)
    assert np.all(np.abs(w.steps) <= 1.0)


@pytest.mark.parametrize("kind,loc,scale", [("robust", 3.0, 2.0), ("standard", 3.0, np.sqrt(2.0)),
                                            ("minmax", 1.0, 4.0), ("none", 0.0, 1.0)])
def test_scaler_types(kind, loc, scale):
    values = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 99.0]])
    mask = np.array([[1, 1, 1, 1, 1, 0.0]])  # the last value is padding
    got_loc, got_scale = window_stats(values, mask, kind)
    np.testing.assert_allclose([got_loc[0, 0], got_scale[0, 0]], [loc, scale])


def test_scaler_type_reaches_the_windows():
    block = SeriesBlock([np.arange(1.0, 41.0)])
    w = forecast_windows(block, model_spec("model.input_size=10", "model.horizon=3", "model.scaler_type=minmax",
                                           features=FeatureSpec()))
    np.testing.assert_allclose([w.loc[0, 0], w.scale[0, 0]], [31.0, 9.0])


# ---------------------------------------------------------------- the model's extra inputs



def test_model_shapes_with_every_covariate_kind():
    spec = FeatureSpec(past=["p"], future=["f"], static_numeric=["n"], static_categorical=["c", "d"],
                       calendar="month", static_buckets=16, static_dim=3)
    model = build_model(_spec(features=spec, skip="none"))
    batch = 5
    out = model(torch.randn(batch, INPUT, 2 + spec.step_features), future=torch.randn(batch, H, spec.horizon_features),
                static_num=torch.randn(batch, 1), static_cat=torch.randint(0, 16, (batch, 2)))
    assert out.shape == (batch, H, 1)
    assert model.encoder.input_size == 2 + 1 + 1 + 2
    assert model.embedding.weight.shape == (16, 3)


def test_future_inputs_change_the_forecast():
    spec = FeatureSpec(future=["f"])
    torch.manual_seed(0)
    model = build_model(_spec(features=spec)).eval()
    x = torch.randn(2, INPUT, 3)
    future = torch.randn(2, H, 1)
    assert not torch.allclose(model(x, future=future), model(x, future=future + 1))


def test_ensemble_members_differ_and_loss_is_their_mean():
    torch.manual_seed(0)
    model = build_model(_spec(ensemble_size=3))
    x = torch.randn(4, INPUT, 2)
    out = model(x)
    assert out.shape == (3, 4, H, 1)
    assert not torch.allclose(out[0], out[1])
    assert member_mean(out).shape == (4, H, 1)
    y, mask = torch.randn(4, H), torch.ones(4, H)
    each = torch.stack([masked_loss(out[i], y, mask, "mae") for i in range(3)])
    torch.testing.assert_close(masked_loss(out, y, mask, "mae"), each.mean())


# ---------------------------------------------------------------- read and validate

def _long_rows(**columns):
    months = pd.date_range("2020-01-01", periods=2, freq="MS")[[1, 0, 0, 1]]  # shuffled in time
    return pa.table({"unique_id": ["a", "b", "a", "b"], "ds": months, **columns})


def test_read_keeps_covariates_aligned_with_y():
    block = _long_rows(y=[2.0, 10.0, 1.0, 20.0], **{"past:p": [0.2, 1.0, 0.1, 2.0], "static:s": ["x", "z", "x", "z"]})
    rows = rows_to_series(block, {c: c for c in block.column_names})
    out = {r["unique_id"]: r for r in rows.to_pylist()}
    assert out["a"]["y"] == [1.0, 2.0] and out["a"]["past:p"] == [0.1, 0.2]
    assert out["b"]["y"] == [10.0, 20.0] and out["b"]["past:p"] == [1.0, 2.0]
    assert out["b"]["static:s"] == ["z", "z"]


def _series_rows(past, static, length=30):
    ds = pd.date_range("2018-01-01", periods=length, freq="MS").to_numpy().astype("datetime64[us]")
    return pa.table({
        "unique_id": [f"s{i}" for i in range(len(past))],
        "ds": pa.array([ds] * len(past), pa.list_(pa.timestamp("us"))),
        "y": pa.array([np.arange(length, dtype=float)] * len(past), pa.list_(pa.float64())),
        "past:p": pa.array(past, pa.list_(pa.float64())),
        "static:s": pa.array(static, pa.list_(pa.string())),
    })


def test_validate_rejects_bad_covariates_and_reduces_statics():
    ok = list(np.ones(30))
    with_nan = ok[:5] + [np.nan] + ok[6:]
    out = validate_batch(_series_rows([ok, with_nan, ok], [["x"] * 30, ["y"] * 30, ["x"] * 29 + ["q"]]),
                         "MS", 6, "2025-01-01").to_pylist()
    assert out[0]["reject_reason"] is None and out[0]["static:s"] == "x" and out[0]["past:p"] == ok
    assert out[1]["reject_reason"] == "non_finite_covariate" and "'p'" in out[1]["reject_detail"]
    assert out[2]["reject_reason"] == "static_not_constant" and "'s'" in out[2]["reject_detail"]


def test_validate_keeps_horizon_values_that_come_with_the_rows():
    rows = _series_rows([list(np.ones(30))], [["x"] * 30]).append_column(
        "horizon:p", pa.array([[1.0, 2.0]], pa.list_(pa.float64())))  # as a backtest's cut makes them
    assert validate_batch(rows, "MS", 2, "2025-01-01").to_pylist()[0]["horizon:p"] == [1.0, 2.0]


def test_side_tables_join_values_and_reject_what_is_missing():
    validated = validate_batch(_series_rows([list(np.ones(30))] * 3, [["x"] * 30] * 3), "MS", 3, "2025-01-01")
    validated = validated.drop_columns(["static:s"])
    static = pa.table({"unique_id": ["s0", "s2"], "static:store": ["A", "B"]})
    future_ds = pd.date_range("2020-07-01", periods=3, freq="MS").to_numpy().astype("datetime64[us]")  # after 2020-06
    future = pa.table({
        "unique_id": ["s0"] * 3 + ["s1"] * 2 + ["s2"] * 3,
        "ds": pa.array(np.concatenate([future_ds, future_ds[:2], future_ds[::-1]])),
        "horizon:price": [1.0, 2.0, 3.0, 5.0, 6.0, 9.0, 8.0, 7.0],
    })
    out = attach_side_tables(validated, "MS", 3, future=future, static=static).to_pylist()
    assert out[0]["reject_reason"] is None and out[0]["static:store"] == "A"
    assert out[0]["horizon:price"] == [1.0, 2.0, 3.0]
    assert out[1]["reject_reason"] == "missing_static"  # checked first; s1 also lacks a future step
    assert out[2]["horizon:price"] == [7.0, 8.0, 9.0]  # sorted by date, not by row order
    only_future = attach_side_tables(validated, "MS", 3, future=future).to_pylist()
    assert only_future[1]["reject_reason"] == "missing_future_covariates"
    assert "2020-09-01" in only_future[1]["reject_detail"] and "'price'" in only_future[1]["reject_detail"]


def test_predictor_uses_the_future_values_it_is_given(tmp_path):
    spec = _spec(features=FeatureSpec(future=["price"], calendar="month", freq="MS"), input_size=8)
    torch.manual_seed(0)
    checkpoint.save(str(tmp_path), build_model(spec), spec)
    predictor = SeriesPredictor(ray.train.Checkpoint.from_directory(str(tmp_path)), freq="MS", season=12,
                                horizon=H, fallback="none", combine="none", nonnegative="none",
                                statistical="theta")

    def batch(prices):
        return pa.table({
            "unique_id": ["a"], "y": pa.array([np.arange(24.0)], pa.list_(pa.float64())),
            "future:price": pa.array([np.arange(24.0) % 3], pa.list_(pa.float64())),
            "horizon:price": pa.array([prices], pa.list_(pa.float64())),
            "first_ds": pa.array(np.array(["2019-01-01"], dtype="datetime64[us]")),
            "last_ds": pa.array(np.array(["2020-12-01"], dtype="datetime64[us]")), "length": [24],
        })

    low = predictor(batch([0.0] * H))["LSTM"].to_numpy()
    high = predictor(batch([5.0] * H))["LSTM"].to_numpy()
    assert not np.allclose(low, high)


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("overrides,key", [
    (["data.future_covariates=[price]"], "data.future_uri"),
    (["data.future_uri=x.parquet"], "data.future_covariates"),
    (["data.static_uri=x.parquet"], "data.static_covariates"),
    (["data.past_covariates=[y]"], "data.past_covariates"),
    (["data.past_covariates=[a]", "data.static_covariates=[a]"], "data.static_covariates"),
    (["model.scaler_type=zscore"], "model.scaler_type"),
    (["model.ensemble_size=0"], "model.ensemble_size"),
])
def test_covariate_config_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, overrides)


def test_missing_covariate_column_names_file_and_key(tmp_path):
    from forecaster.read import DataError, check_schema

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"unique_id": ["a"], "ds": pd.to_datetime(["2020-01-01"]), "y": [1.0],
                             "promo": ["yes"]}), path)
    with pytest.raises(DataError, match=r"in\.parquet: missing column 'temp' \(listed in data\.past_covariates\)"):
        check_schema(load_config(None, [f"data.uri={path}", "data.past_covariates=[temp]"]))
    with pytest.raises(DataError, match=r"column 'promo' \(data\.future_covariates\) has type string"):
        check_schema(load_config(None, [f"data.uri={path}", "data.future_covariates=[promo]",
                                        f"data.future_uri={path}"]))


def test_duplicate_keys_in_side_tables_stop_the_job(tmp_path):
    from forecaster.read import DataError, read_side_table

    future = tmp_path / "future.parquet"
    pq.write_table(pa.table({"unique_id": ["a", "a"], "ds": pd.to_datetime(["2020-01-01"] * 2),
                             "price": [1.0, 2.0]}), future)
    static = tmp_path / "static.parquet"
    pq.write_table(pa.table({"unique_id": ["a", "b", "b"], "store": ["x", "y", "z"]}), static)
    cfg = load_config(None, ["data.future_covariates=[price]", f"data.future_uri={future}",
                             "data.static_covariates=[store]", f"data.static_uri={static}"])
    with pytest.raises(DataError, match=r"data\.future_uri=.*1 key\(s\) appear more than once"):
        read_side_table(cfg, "future")
    with pytest.raises(DataError, match=r"data\.static_uri=.*'unique_id': 'b'"):
        read_side_table(cfg, "static")
    ok = pa.table({"unique_id": ["a", "b"], "store": ["x", "y"]})
    pq.write_table(ok, static)
    assert read_side_table(cfg, "static").column_names == ["unique_id", "static:store"]
