"""The predictor class on its own (no Ray): columns, intervals, fallback, short series, dates."""

import numpy as np
import pyarrow as pa
import pytest
import ray.train
import torch

from forecaster import checkpoint
from forecaster.features import SeriesBlock
from forecaster.model import build_model
from forecaster.predict import SeriesPredictor, without_fallback
from tests.specs import SMALL, model_spec

HORIZON = 4
PLAIN = {"freq": "MS", "season": 4, "horizon": HORIZON, "fallback": "none", "combine": "none", "nonnegative": "none",
         "statistical": "theta"}


def _checkpoint(tmp_path, loss="mae", levels=(), seed=0):
    """An untrained model of the default config's kind (calendar features, linear skip, ...), small."""
    spec = model_spec(*SMALL, f"model.horizon={HORIZON}", f"model.loss={loss}",
                      f"model.levels=[{','.join(map(str, levels))}]")
    torch.manual_seed(seed)
    checkpoint.save(str(tmp_path), build_model(spec), spec)
    return ray.train.Checkpoint.from_directory(str(tmp_path))


def _batch(series: dict[str, list[float]], last="2020-12-01"):
    lengths = [len(v) for v in series.values()]
    month = np.datetime64(last, "M")  # the calendar features' anchor: monthly points up to `last`
    return pa.table({
        "unique_id": list(series),
        "y": pa.array([list(map(float, v)) for v in series.values()], pa.list_(pa.float64())),
        "first_ds": pa.array(np.array([month - (n - 1) for n in lengths]).astype("datetime64[us]")),
        "last_ds": pa.array(np.array([last] * len(series), dtype="datetime64[us]")),
        "length": lengths,
    })


def test_columns_dates_and_short_series(tmp_path):
    predictor = SeriesPredictor(_checkpoint(tmp_path), **PLAIN)
    out = predictor(_batch({"long": np.arange(20), "tiny": [5.0, 6.0], "three": [1.0, 2.0, 3.0, 4.0]})).to_pandas()
    assert len(out) == 3 * HORIZON
    long = out[out.unique_id == "long"]
    assert list(long.ds.dt.strftime("%Y-%m-%d")) == ["2021-01-01", "2021-02-01", "2021-03-01", "2021-04-01"]
    assert (long.model == "LSTM").all() and np.isfinite(long.LSTM).all()
    np.testing.assert_allclose(long.forecast, long.LSTM)
    tiny = out[out.unique_id == "tiny"]  # 2 points < horizon + 2: Theta, no LSTM value
    assert (tiny.model == "Theta").all() and tiny.LSTM.isna().all()
    np.testing.assert_allclose(tiny.forecast, tiny.Theta)
    three = out[out.unique_id == "three"]  # a linear trend of 4 points: Theta follows half its slope
    assert (three.model == "Theta").all() and (three.SeasonalNaive.to_numpy() == [1, 2, 3, 4]).all()
    np.testing.assert_allclose(three.forecast, three.Theta)
    assert (np.diff(three.forecast) > 0).all() and three.forecast.iloc[0] > 4


def test_quantile_columns_never_cross(tmp_path):
    predictor = SeriesPredictor(_checkpoint(tmp_path, "quantile", (80, 95)), **PLAIN)
    rng = np.random.default_rng(0)
    out = predictor(_batch({f"s{i}": rng.normal(100, 10, 30) for i in range(20)})).to_pandas()
    ordered = out[["LSTM-lo-95", "LSTM-lo-80", "LSTM", "LSTM-hi-80", "LSTM-hi-95"]].to_numpy()
    assert (np.diff(ordered, axis=1) >= 0).all()


def test_fallback_picks_seasonal_naive_where_it_won_validation(tmp_path):
    """A pure repeating pattern: seasonal naive is exact on the held-out part, the untrained net is not."""
    predictor = SeriesPredictor(_checkpoint(tmp_path), **{**PLAIN, "fallback": "validation"})
    pattern = np.tile([10.0, 50.0, 20.0, 80.0], 6)
    out = predictor(_batch({"seasonal": pattern})).to_pandas()
    assert (out.model == "SeasonalNaive").all()
    np.testing.assert_allclose(out.forecast, [10, 50, 20, 80])
    assert np.isfinite(out.LSTM).all()  # the network's own forecast is still reported


def test_combine_theta_averages_the_network_and_theta(tmp_path):
    rng = np.random.default_rng(0)
    batch = _batch({f"s{i}": 100 + rng.normal(size=30).cumsum() for i in range(5)} | {"tiny": [5.0, 6.0]})
    alone = SeriesPredictor(_checkpoint(tmp_path), **PLAIN)(batch)
    combined = SeriesPredictor(_checkpoint(tmp_path), **{**PLAIN, "combine": "theta"})(batch).to_pandas()
    np.testing.assert_allclose(combined.LSTM, alone["LSTM"].to_numpy())  # the network's own column stays
    np.testing.assert_allclose(combined.Theta, alone["Theta"].to_numpy())
    long = combined[combined.unique_id != "tiny"]
    assert (long.model == "LSTM+Theta").all() and np.isfinite(long.Theta).all()
    np.testing.assert_allclose(long.forecast, (long.LSTM + long.Theta) / 2)
    assert not np.allclose(long.forecast, long.LSTM)
    tiny = combined[combined.unique_id == "tiny"]  # too short for the network: Theta, not the mean
    assert (tiny.model == "Theta").all()
    np.testing.assert_allclose(tiny.forecast, tiny.Theta)


def test_the_partner_is_the_mean_of_theta_and_the_damped_trend_or_ses(tmp_path):
    """model.statistical=theta_damped: `forecast` is the mean of the LSTM and the mean of Theta and
    DampedTrend; theta_ses: of Theta and SES (the two that auto chooses between); a series too short for
    the network gets the partner alone. Every baseline's column is written whatever the partner."""
    rng = np.random.default_rng(0)
    batch = _batch({f"s{i}": 100 + rng.normal(size=30).cumsum() + 2.0 * np.arange(30) for i in range(5)}
                   | {"tiny": [5.0, 6.0, 8.0]})
    out = SeriesPredictor(_checkpoint(tmp_path), **{**PLAIN, "combine": "theta", "statistical": "theta_damped"})(
        batch).to_pandas()
    long, tiny = out[out.unique_id != "tiny"], out[out.unique_id == "tiny"]
    assert (long.model == "LSTM+Theta+DampedTrend").all() and (tiny.model == "Theta+DampedTrend").all()
    assert np.isfinite(out.DampedTrend).all() and not np.allclose(out.DampedTrend, out.Theta)
    np.testing.assert_allclose(long.forecast, (long.LSTM + (long.Theta + long.DampedTrend) / 2) / 2)
    np.testing.assert_allclose(tiny.forecast, (tiny.Theta + tiny.DampedTrend) / 2)
    theta_only = SeriesPredictor(_checkpoint(tmp_path), **{**PLAIN, "combine": "theta"})(batch).to_pandas()
    np.testing.assert_allclose(theta_only.DampedTrend, out.DampedTrend)  # the column, whatever the partner
    with_ses = SeriesPredictor(_checkpoint(tmp_path), **{**PLAIN, "combine": "theta", "statistical": "theta_ses"})(
        batch).to_pandas()
    long, tiny = with_ses[with_ses.unique_id != "tiny"], with_ses[with_ses.unique_id == "tiny"]
    assert (long.model == "LSTM+Theta+SES").all() and (tiny.model == "Theta+SES").all()
    assert not np.allclose(with_ses.SES, with_ses.DampedTrend)
    np.testing.assert_allclose(long.forecast, (long.LSTM + (long.Theta + long.SES) / 2) / 2)
    np.testing.assert_allclose(tiny.forecast, (tiny.Theta + tiny.SES) / 2)
    np.testing.assert_allclose(with_ses.SES, out.SES)


def test_the_seasonality_level_is_the_checkpoints_where_it_records_one(tmp_path):
    """The statistical methods test for a season at model.seasonality_level; a checkpoint whose training
    recorded its level (the loop's settings) is forecast with that one, as its partner was validated and
    calibrated with it, whatever the config says now."""
    import json

    from forecaster.theta import statistical

    pattern = np.array([1.0, 1.5, 0.5, 1.2])
    values = 100.0 * np.tile(pattern, 9)
    batch = _batch({"s": values})
    block = SeriesBlock([values])
    options = {**PLAIN, "season": 4}
    for level in (0.5, 1.0):  # a checkpoint without the record: the config's level
        out = SeriesPredictor(_checkpoint(tmp_path), **options, seasonality_level=level)(batch).to_pandas()
        np.testing.assert_allclose(out.SES, statistical(block, block.lengths, HORIZON, 4, level=level)["SES"][0])
    recorded = statistical(block, block.lengths, HORIZON, 4, level=1.0)["SES"][0]
    assert not np.allclose(recorded, statistical(block, block.lengths, HORIZON, 4)["SES"][0])
    settings = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**settings, "train": {"seasonality_level": 1.0}}))
    out = SeriesPredictor(ray.train.Checkpoint.from_directory(str(tmp_path)), **options,
                          seasonality_level=0.5)(batch).to_pandas()
    np.testing.assert_allclose(out.SES, recorded)


def test_auto_with_a_checkpoint_that_records_no_choice_forecasts_with_the_partner_it_was_validated_with(tmp_path):
    """model.statistical=auto with a checkpoint that records no choice (trained before auto, or with a
    configured partner) forecasts with theta_damped, auto's first candidate before the optimised Theta:
    the partner its validation and intervals were made with. Without a checkpoint, the first candidate."""
    batch = _batch({"s": 100 + np.arange(30.0), "tiny": [5.0, 6.0, 8.0]})
    out = SeriesPredictor(_checkpoint(tmp_path), **{**PLAIN, "combine": "theta", "statistical": "auto"})(
        batch).to_pandas()
    assert set(out.model) == {"LSTM+Theta+DampedTrend", "Theta+DampedTrend"}
    alone = SeriesPredictor(None, **{**PLAIN, "combine": "theta", "statistical": "auto"})(batch).to_pandas()
    assert set(alone.model) == {"OptimizedTheta+DampedTrend"}


@pytest.mark.parametrize("saved,model", [(0.8, "LSTM+Theta"), (1.0, "LSTM")])
def test_the_weight_training_chose_makes_the_forecast(tmp_path, saved, model):
    """model.combine=fitted: the checkpoint's combine_weight weighs the LSTM."""
    spec = model_spec(*SMALL, f"model.horizon={HORIZON}")
    checkpoint.save(str(tmp_path), build_model(spec), spec, state=checkpoint.TrainingState(combine_weight=saved))
    rng = np.random.default_rng(0)
    batch = _batch({f"s{i}": 100 + rng.normal(size=30).cumsum() for i in range(5)})
    out = SeriesPredictor(ray.train.Checkpoint.from_directory(str(tmp_path)),
                          **{**PLAIN, "combine": "fitted"})(batch).to_pandas()
    assert (out.model == model).all()
    np.testing.assert_allclose(out.forecast, saved * out.LSTM + (1 - saved) * out.Theta)
    # a fixed method keeps its own weight whatever the checkpoint says (a rerun with another model.combine)
    mean = SeriesPredictor(ray.train.Checkpoint.from_directory(str(tmp_path)),
                           **{**PLAIN, "combine": "theta"})(batch).to_pandas()
    np.testing.assert_allclose(mean.forecast, (mean.LSTM + mean.Theta) / 2)


def test_a_checkpoint_without_a_weight_makes_the_mean_for_fitted(tmp_path):
    rng = np.random.default_rng(0)
    batch = _batch({f"s{i}": 100 + rng.normal(size=30).cumsum() for i in range(3)})
    out = SeriesPredictor(_checkpoint(tmp_path), **{**PLAIN, "combine": "fitted"})(batch).to_pandas()
    np.testing.assert_allclose(out.forecast, (out.LSTM + out.Theta) / 2)


def test_fallback_judges_the_combined_forecast(tmp_path):
    """A noiseless trend: Theta (fitted before the held-out part) is near exact there and seasonal
    naive is not, so with combine=theta the combination is kept where the untrained network alone
    loses to seasonal naive."""
    trend = 100 + 3.0 * np.arange(40)
    kwargs = {**PLAIN, "fallback": "validation"}
    alone = SeriesPredictor(_checkpoint(tmp_path), **kwargs)(_batch({"trend": trend})).to_pandas()
    combined = SeriesPredictor(_checkpoint(tmp_path), **{**kwargs, "combine": "theta"})(
        _batch({"trend": trend})).to_pandas()
    assert (alone.model == "SeasonalNaive").all()
    assert (combined.model == "LSTM+Theta").all()


def test_the_fallback_judges_the_forecast_with_the_partner_of_model_statistical(tmp_path):
    """model.fallback=validation keeps the network where its combination with model.statistical's partner
    (fitted before the held-out points) beat seasonal naive there: the decisions follow the partner, and
    differ between theta and theta_damped on trending series."""
    from forecaster.evaluate import holdout_actual, seasonal_naive
    from forecaster.features import validation_windows
    from forecaster.theta import partner, statistical

    rng = np.random.default_rng(7)
    batch = _batch({f"s{i}": 100 + rng.uniform(0, 4) * np.arange(30) + rng.normal(0, 3, 30).cumsum()
                    for i in range(60)})
    decisions = {}
    for method in ("theta", "theta_damped"):
        (tmp_path / method).mkdir()
        predictor = SeriesPredictor(_checkpoint(tmp_path / method), **{**PLAIN, "fallback": "validation",
                                                                      "combine": "theta", "statistical": method})
        block = predictor.block(batch)
        cutoffs, actual = block.lengths - HORIZON, holdout_actual(block, HORIZON)
        lstm = predictor._network(validation_windows(block, predictor.spec))[..., 0]
        combined = (lstm + partner(statistical(block, cutoffs, HORIZON, 4), method)) / 2
        naive = seasonal_naive(block, cutoffs, HORIZON, 4)
        expected = np.abs(actual - combined).mean(axis=1) <= np.abs(actual - naive).mean(axis=1)
        decisions[method] = predictor._lstm_wins_validation(block)
        np.testing.assert_array_equal(decisions[method], expected)
    assert (decisions["theta"] != decisions["theta_damped"]).any()


@pytest.mark.parametrize("weight,expected", [(0.5, [[2.0, 3.0], [5.0, 5.0]]), (1.0, [[1.0, 2.0], [5.0, 5.0]]),
                                             (0.75, [[1.5, 2.5], [5.0, 5.0]])])
def test_without_fallback_is_the_network_forecast_wherever_the_network_forecast(weight, expected):
    """What the backtest's no_fallback and the accuracy bench score. Series a: the fallback chose
    seasonal naive (9, 9); without it the network's forecast stands. Series b: too short for the
    network (LSTM NaN), its baseline stays."""
    lstm, statistical = np.array([[1.0, 2.0], [np.nan, np.nan]]), np.array([[3.0, 4.0], [6.0, 6.0]])
    chosen = np.array([[9.0, 9.0], [5.0, 5.0]])
    np.testing.assert_array_equal(without_fallback(lstm, statistical, chosen, weight, None), expected)


def test_without_fallback_is_floored_as_forecast_is():
    """model.nonnegative=auto: the series never below zero (a) get no negative value; b keeps its own."""
    lstm, statistical = np.array([[-4.0, 2.0], [-4.0, 2.0]]), np.array([[1.0, -6.0], [1.0, -6.0]])
    chosen = np.zeros((2, 2))
    floored = without_fallback(lstm, statistical, chosen, 0.5, np.array([True, False]))
    np.testing.assert_array_equal(floored, [[0.0, 0.0], [-1.5, -2.0]])
    rows = without_fallback(lstm.reshape(-1), statistical.reshape(-1), chosen.reshape(-1), 0.5,
                            np.array([True, True, False, False]))  # one value per row, as the bench's columns
    np.testing.assert_array_equal(rows, [0.0, 0.0, -1.5, -2.0])


@pytest.mark.parametrize("freq,expected", [("D", "2020-12-02"), ("W-SUN", "2020-12-06"), ("QS", "2021-01-01")])
def test_future_dates_follow_the_frequency(tmp_path, freq, expected):
    predictor = SeriesPredictor(_checkpoint(tmp_path), **{**PLAIN, "freq": freq})
    last = {"W-SUN": "2020-11-29", "QS": "2020-10-01"}.get(freq, "2020-12-01")
    out = predictor(_batch({"a": np.arange(12)}, last=last)).to_pandas()
    assert out.ds.iloc[0].strftime("%Y-%m-%d") == expected


def test_baselines_only_without_checkpoint():
    predictor = SeriesPredictor(None, **PLAIN)
    out = predictor(_batch({"a": np.arange(10)})).to_pandas()
    assert (out.model == "Theta").all() and out.LSTM.isna().all()
    np.testing.assert_allclose(out.forecast, out.Theta)


def test_what_a_checkpoint_without_a_record_forecasts_with_is_read_in_one_place():
    """checkpoint.Best fills what an older checkpoint lacks, for the predictor and the manifest alike:
    auto's partner is the recorded choice, else theta.UNRECORDED (not today's first candidate); a
    configured partner stays itself; the seasonality level is the recorded one, else the config's."""
    from forecaster.checkpoint import Best
    from forecaster.theta import CANDIDATES, UNRECORDED

    old = Best({}, model_spec(), None, None, None, None)
    assert old.partner("auto") == UNRECORDED != CANDIDATES[0] and old.partner("theta_ses") == "theta_ses"
    assert old.level(0.9) == 0.9
    new = old._replace(statistical={"configured": "auto", "chosen": "theta_ses"}, seasonality_level=0.5)
    assert new.partner("auto") == "theta_ses" and new.partner("theta") == "theta" and new.level(0.9) == 0.5


def test_a_checkpoint_of_the_first_format_still_forecasts(tmp_path):
    """A checkpoint as the first version wrote it: model.pt without the later state keys, config.json's
    model without quantiles, scaler_type, skip, features... It loads through the one reader
    (ModelSpec.from_dict) and forecasts with the network it was: robust scaling, no calendar inputs."""
    import json

    from forecaster.spec import ModelSpec
    from tests.test_train import FIRST_FORMAT

    old = {**FIRST_FORMAT, "horizon": HORIZON, "input_size": 8, "hidden_size": 8, "num_layers": 1}
    torch.manual_seed(0)
    model = build_model(ModelSpec.from_dict(old))
    torch.save({"model": model.state_dict(), "optimizer": {}, "epoch": 3, "best_val": 0.5, "bad_epochs": 0,
                "best_model": None, "restarts": 0, "best_scores": {}}, tmp_path / "model.pt")
    (tmp_path / "config.json").write_text(json.dumps({"model": old, "train": {"max_epochs": 30}}))
    predictor = SeriesPredictor(ray.train.Checkpoint.from_directory(str(tmp_path)), **PLAIN)
    assert predictor.spec.scaler_type == "robust" and predictor.model.skip is None
    out = predictor(_batch({"a": 100 + np.arange(20.0)})).to_pandas()
    assert (out.model == "LSTM").all() and np.isfinite(out.LSTM).all() and list(out.columns) == [
        "unique_id", "ds", "LSTM", "Naive", "SeasonalNaive", "Theta", "DampedTrend", "SES", "OptimizedTheta",
        "forecast", "model", "cutoff"]


def test_bf16_prediction_stays_within_bf16_rounding_of_fp32(tmp_path, monkeypatch):
    """predict.precision=bf16: bfloat16 weights where the CPU has bf16 units (this one: AVX-512 BF16),
    forecasts within bf16's rounding of fp32's; without the units, fp32 as before."""
    from forecaster import model as model_module

    rng = np.random.default_rng(0)
    batch = _batch({f"s{i}": 100 + rng.normal(size=30).cumsum() for i in range(50)})
    fp32 = SeriesPredictor(_checkpoint(tmp_path), **PLAIN)(batch).to_pandas()
    if model_module.bf16_units("cpu"):
        bf16 = SeriesPredictor(_checkpoint(tmp_path), **PLAIN, precision="bf16")
        assert next(bf16.model.parameters()).dtype == torch.bfloat16
        out = bf16(batch).to_pandas()
        scale = np.abs(fp32.LSTM).max()
        assert np.abs(out.LSTM - fp32.LSTM).max() < 0.02 * scale and not np.array_equal(out.LSTM, fp32.LSTM)
    monkeypatch.setattr(model_module, "bf16_units", lambda device_type: False)
    fallback = SeriesPredictor(_checkpoint(tmp_path), **PLAIN, precision="bf16")
    assert next(fallback.model.parameters()).dtype == torch.float32
    np.testing.assert_array_equal(fallback(batch).to_pandas().LSTM, fp32.LSTM)
