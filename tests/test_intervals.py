"""The calibrated intervals of `forecast` (forecaster/intervals.py): the histogram's quantiles, their
coverage on new errors, and what the predictor writes from a checkpoint's calibration."""

import numpy as np
import pyarrow as pa
import pytest
import ray.train
import torch

from forecaster import checkpoint, intervals
from forecaster.checkpoint import TrainingState
from forecaster.columns import DAMPED, SES, THETA
from forecaster.evaluate import mase_scale
from forecaster.features import SeriesBlock
from forecaster.model import build_model
from forecaster.predict import SeriesPredictor
from tests.specs import SMALL, model_spec

HORIZON = 3


def _errors(rng, n):
    """(n, HORIZON) errors whose spread grows with the step, around forecasts of 0, scale 1."""
    return rng.exponential(np.array([1.0, 2.0, 4.0]), size=(n, HORIZON))


@pytest.mark.parametrize("level", [50, 80, 95])
def test_the_histogram_quantile_is_the_conformal_one_to_a_bin(level):
    rng = np.random.default_rng(0)
    errors = _errors(rng, 5000)
    counts = intervals.error_histogram(errors, np.zeros_like(errors), np.ones(len(errors)))
    q = intervals.quantiles(counts, [level])[0]
    n = len(errors)
    exact = np.sort(errors, axis=0)[int(np.ceil((n + 1) * level / 100)) - 1]  # the split-conformal rank
    assert (q >= exact).all() and (q <= exact * 1.012).all(), (q, exact)  # the bin's upper edge


def test_new_errors_fall_inside_at_the_level():
    rng = np.random.default_rng(1)
    calibration, new = _errors(rng, 4000), _errors(rng, 20000)
    counts = intervals.error_histogram(calibration, np.zeros_like(calibration), np.ones(len(calibration)))
    q80, q95 = intervals.quantiles(counts, [80, 95])
    for q, level in ((q80, 0.80), (q95, 0.95)):
        inside = (new <= q).mean(axis=0)
        assert np.all(np.abs(inside - level) < 0.015), inside


def test_histograms_of_shards_add_up_to_the_whole():
    """What the ranks' all-reduce relies on; errors are scaled by each series' own scale; series
    without a scale (NaN) or an actual are left out."""
    rng = np.random.default_rng(2)
    actual, forecast = rng.normal(100, 10, (40, HORIZON)), np.full((40, HORIZON), 100.0)
    scale = rng.uniform(1, 5, 40)
    scale[3] = np.nan
    actual[5, 1] = np.nan
    whole = intervals.error_histogram(actual, forecast, scale)
    halves = (intervals.error_histogram(actual[:17], forecast[:17], scale[:17])
              + intervals.error_histogram(actual[17:], forecast[17:], scale[17:]))
    np.testing.assert_array_equal(whole, halves)
    assert whole.sum(axis=1).tolist() == [39, 38, 39]
    largest = np.nanmax(np.abs(actual - forecast) / scale[:, None], axis=0)
    assert (intervals.quantiles(whole, [100])[0] >= largest).all()


def test_no_errors_no_calibration():
    assert intervals.quantiles(np.zeros((HORIZON, intervals.BINS)), [80]) is None
    assert intervals.quantiles(np.ones((HORIZON, intervals.BINS)), []) is None


def test_the_spread_is_the_deviation_of_the_models_forecasts_averaged_over_the_steps():
    """Per series and step the population standard deviation across the models that forecast (NaN: a model
    without a forecast, e.g. the LSTM on a short series), then the mean over the steps; 0 for one model."""
    rng = np.random.default_rng(1)
    members = [rng.normal(10, 3, (4, HORIZON)) for _ in range(4)]
    members[0][1] = np.nan  # series 1: no LSTM
    members[0][2, 0] = np.nan  # series 2: the LSTM misses one step
    # two models, two without a forecast: series 1 and series 2's first step have one model (spread 0 there)
    pair = [members[0], members[1].copy(), np.full((4, HORIZON), np.nan), np.full((4, HORIZON), np.nan)]
    pair[1][3] = np.nan  # series 3: the LSTM alone
    for models in (members, pair):
        expected = []
        for series in range(4):
            steps = []
            for step in range(HORIZON):
                values = [m[series, step] for m in models if np.isfinite(m[series, step])]
                steps.append(float(np.sqrt(np.mean((np.array(values) - np.mean(values)) ** 2))) if len(values) >= 2
                             else 0.0)
            expected.append(np.mean(steps))
        np.testing.assert_allclose(intervals.spread(models), expected)
    assert intervals.spread([np.full((2, HORIZON), 5.0)] * 3).tolist() == [0.0, 0.0]


def test_the_unit_is_the_mase_scale_plus_the_weighted_spread_or_the_scale_alone():
    scale = np.array([2.0, np.nan, 1.0])
    members = [np.array([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]]), np.array([[2.0, 4.0], [1.0, 1.0], [3.0, 3.0]])]
    np.testing.assert_array_equal(intervals.units(scale, members, "mase"), scale)
    np.testing.assert_allclose(intervals.units(scale, members, "spread"),
                               [2.0 + intervals.SPREAD_WEIGHT * 1.5, np.nan, 1.0])
    # a flat history (scale 0) scales no interval, whatever the spread
    assert np.isnan(intervals.units(np.array([0.0]), [np.ones((1, 2)), np.zeros((1, 2))], "spread")).all()


def test_the_calibration_record_names_its_unit_and_an_old_one_reads_as_the_mase_scale():
    recorded = intervals.record(np.array([[1.0, 2.0], [3.0, 4.0]]), (80, 95), "spread")
    calibration = intervals.read(recorded)
    assert calibration.unit == "spread" and calibration.quantiles[95].tolist() == [3.0, 4.0]
    old = {"levels": [80], "quantiles": [[1.0, 2.0]]}  # a checkpoint from before the unit was kept
    assert intervals.read(old).unit == "mase"
    assert intervals.read(None).unit == "mase" and intervals.read(None).quantiles == {}
    assert intervals.record(None, (80,), "spread") is None
    newer = {"levels": [80], "quantiles": [[1.0, 2.0]], "unit": "iqr"}  # a unit this version does not know
    with pytest.raises(ValueError, match="interval calibration is in unit 'iqr'.*spread, mase"):
        intervals.read(newer)


def test_short_series_fall_in_length_groups_closed_at_the_networks_minimum():
    assert intervals.short_groups(18).tolist() == [2, 3, 4, 6, 8, 12, 16, 20]  # min_length(18) = 20
    assert intervals.short_groups(6).tolist() == [2, 3, 4, 6, 8]
    assert intervals.short_groups(8).tolist() == [2, 3, 4, 6, 8, 10]
    assert intervals.short_groups(1).tolist() == [2, 3]


def test_a_short_series_draws_its_groups_quantiles_and_every_other_series_the_validated_ones():
    """The quantiles table per series: a series too short for the network takes its length group's; where
    that group was not calibrated, the nearest shorter calibrated group's (wider), and the validated
    series' where there is none; a network series (past the last edge), one of a single point (before
    the first) and every series of a calibration without groups (older checkpoints) take the validated
    series'."""
    main = np.array([[1.0, 2.0], [3.0, 4.0]])  # (levels 80, 95; horizon 2)
    a, c = [[10.0, 20.0], [30.0, 40.0]], [[50.0, 60.0], [70.0, 80.0]]
    short = {"edges": [2, 4, 8, 16], "quantiles": [a, None, c]}  # [2, 4), [4, 8) too few errors, [8, 16)
    calibration = intervals.read(intervals.record(main, (80, 95), "spread", short))
    lengths = np.array([1, 2, 3, 5, 9, 15, 16, 40])  # 16 on: long enough for the network
    table = calibration.table(95, lengths)
    np.testing.assert_array_equal(table, [[3, 4], [30, 40], [30, 40], [30, 40], [70, 80], [70, 80], [3, 4], [3, 4]])
    assert np.isnan(calibration.table(90, lengths)).all()  # a level not calibrated: no interval
    first_missing = intervals.read(intervals.record(main, (80, 95), "spread", {**short, "quantiles": [None, a, c]}))
    np.testing.assert_array_equal(first_missing.table(80, np.array([3, 5, 9])), [[1, 2], [10, 20], [50, 60]])
    old = intervals.read(intervals.record(main, (80, 95), "spread"))
    np.testing.assert_array_equal(old.table(80, lengths), np.tile([1.0, 2.0], (len(lengths), 1)))


def test_a_length_group_with_too_few_errors_for_the_highest_level_is_not_calibrated():
    """The conformal rank ceil((n + 1) L / 100) needs n >= L / (100 - L) errors (19 at 95 %, 4 at 80 %);
    with fewer it can only give the largest error, and short_record leaves the group uncalibrated."""
    def counts(n):  # (horizon 2, BINS): n errors at each step
        return intervals.error_histogram(np.arange(float(n))[:, None] * [1.0, 2.0], np.zeros((n, 2)), np.ones(n))

    assert intervals.enough(counts(19), (80, 95)) and not intervals.enough(counts(18), (80, 95))
    assert intervals.enough(counts(4), (80,)) and not intervals.enough(counts(3), (80,))
    record = intervals.short_record(np.stack([counts(19), counts(18)]), (80, 95), 2)  # groups [2, 3), [3, 4)
    assert record["quantiles"][0] is not None and record["quantiles"][1] is None


def test_short_histograms_hold_the_partners_errors_from_training_parts_cut_to_each_groups_lengths():
    """Group [lo, hi): series i cut to lo + i mod (hi - lo) points before its validation window, the
    partner fitted on those alone, its errors in the unit made from them (the spread of all three
    statistical methods), floored as `forecast` is; checked against a loop that builds each cut series
    by hand."""
    from forecaster.evaluate import holdout_actual
    from forecaster.theta import floor_series, floored, partner, statistical

    rng = np.random.default_rng(5)
    horizon, season = 8, 4  # groups [2, 3), [3, 4), [4, 6), [6, 8), [8, 10)
    values = [100 + np.cumsum(rng.normal(-1, 6, n)) for n in (13, 15, 17, 20, 31, 40)]
    block = SeriesBlock(values)
    edges = intervals.short_groups(horizon)
    for method in ("otm_damped", "theta_ses", "theta_damped"):
        counts = intervals.short_histograms(block, horizon, season, method, "spread", "auto")
        assert counts.shape == (len(edges) - 1, horizon, intervals.BINS)
        actual = holdout_actual(block, horizon)
        for group, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            expected = np.zeros((horizon, intervals.BINS))
            for i, v in enumerate(values):
                cutoff, length = len(v) - horizon, lo + i % (hi - lo)
                if cutoff < length:
                    continue
                cut = SeriesBlock([v[cutoff - length:cutoff]])
                methods = statistical(cut, cut.lengths, horizon, season)
                unit = intervals.units(mase_scale(cut, cut.lengths, season),
                                       [methods[THETA], methods[DAMPED], methods[SES]], "spread")
                forecast = floored(partner(methods, method), floor_series(cut, cut.lengths, "auto"))
                expected += intervals.error_histogram(actual[i:i + 1], forecast, unit)
            np.testing.assert_array_equal(counts[group], expected)
        # 13 points: a training part of 5, in no cut of 6 or more; 15 (i = 1): 7, cut to 7 in [6, 8)
        assert counts[:3].sum() == 6 * 3 * horizon and counts[3].sum() == 5 * horizon
        assert counts[4].sum() == 4 * horizon  # [8, 10): 8 or 9 points, the two shortest series left out


def test_validation_calibrates_forecast_in_the_configured_unit():
    """The validation pass's histogram holds |actual - forecast| / unit with the unit of
    model.interval_unit: the spread of the LSTM's and the statistical methods' forecasts counts."""
    from forecaster.train import SCORES, _Baselines, _ForecastTally

    rng = np.random.default_rng(2)
    n = 50
    actual, lstm = rng.normal(100, 10, (n, HORIZON)), rng.normal(100, 10, (n, HORIZON))
    members = [rng.normal(100, 5, (n, HORIZON)) for _ in range(3)]
    scale = rng.uniform(1, 5, n)
    fixed = _Baselines(dict(zip(("Theta", "DampedTrend", "SES"), members, strict=True)), scale, actual, None, {}, None)
    forecast = (lstm + members[0]) / 2
    for rule in ("spread", "mase"):
        tally = _ForecastTally(HORIZON, 0, rule)
        tally.add(0.5, pa.array([str(i) for i in range(n)]), lstm, fixed, "theta",
                  {name: np.ones(n) for name in SCORES})
        unit = scale + (intervals.SPREAD_WEIGHT * intervals.spread([lstm, *members]) if rule == "spread" else 0.0)
        np.testing.assert_array_equal(tally.errors, intervals.error_histogram(actual, forecast, unit))
    assert not np.array_equal(intervals.error_histogram(actual, forecast, scale),
                              intervals.error_histogram(actual, forecast, scale + intervals.spread([lstm, *members])))


def _checkpoint(tmp_path, calibration):
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = model_spec(*SMALL, f"model.horizon={HORIZON}")
    torch.manual_seed(0)
    checkpoint.save(str(tmp_path), build_model(spec), spec, state=TrainingState(calibration=calibration))
    return ray.train.Checkpoint.from_directory(str(tmp_path))


def _batch(series):
    lengths = [len(v) for v in series.values()]
    return pa.table({
        "unique_id": list(series),
        "y": pa.array([list(map(float, v)) for v in series.values()], pa.list_(pa.float64())),
        "first_ds": pa.array(np.array([np.datetime64("2020-12", "M") - (n - 1) for n in lengths]).astype(
            "datetime64[us]")),
        "last_ds": pa.array(np.array(["2020-12-01"] * len(series), dtype="datetime64[us]")),
        "length": lengths,
    })


OPTIONS = {"freq": "MS", "season": 4, "horizon": HORIZON, "fallback": "none", "combine": "theta",
           "nonnegative": "none", "statistical": "theta"}


def test_the_predictor_writes_intervals_of_forecast_from_the_calibration(tmp_path):
    calibration = {"levels": [80, 95], "quantiles": [[0.5, 1.0, 1.5], [1.0, 2.0, 3.0]]}
    predictor = SeriesPredictor(_checkpoint(tmp_path, calibration), **OPTIONS, levels=(80, 95))
    rng = np.random.default_rng(3)
    series = {"a": 100 + rng.normal(0, 5, 30), "short": [5.0, 7.0, 6.0]}  # short: a baseline's forecast
    out = predictor(_batch(series)).to_pandas()
    assert [c for c in out.columns if c.startswith("forecast")] == [
        "forecast", "forecast-lo-80", "forecast-hi-80", "forecast-lo-95", "forecast-hi-95"]
    for uid, values in series.items():
        rows = out[out.unique_id == uid]
        scale = mase_scale(SeriesBlock([np.asarray(values)]), np.array([len(values)]), 4)[0]
        np.testing.assert_allclose(rows["forecast-hi-80"] - rows.forecast, np.array([0.5, 1.0, 1.5]) * scale)
        np.testing.assert_allclose(rows.forecast - rows["forecast-lo-95"], np.array([1.0, 2.0, 3.0]) * scale)
    assert (out["forecast-lo-95"] <= out["forecast-lo-80"]).all()
    assert (out["forecast-hi-80"] <= out["forecast-hi-95"]).all()


def test_the_predictor_draws_intervals_in_the_unit_its_checkpoint_names(tmp_path):
    """unit=spread: the MASE scale plus SPREAD_WEIGHT x the spread of the written LSTM, Theta, DampedTrend
    and SES columns (the three statistical ones alone on a series too short for the network); a
    calibration without a unit (older checkpoints) keeps the MASE scale (the test above)."""
    quantiles = [[0.5, 1.0, 1.5], [1.0, 2.0, 3.0]]
    predictor = SeriesPredictor(_checkpoint(tmp_path, {"levels": [80, 95], "quantiles": quantiles, "unit": "spread"}),
                                **OPTIONS, levels=(80, 95))
    rng = np.random.default_rng(4)
    series = {"a": 100 + np.arange(30.0) + rng.normal(0, 5, 30), "short": [5.0, 7.0, 6.0, 9.0]}
    out = predictor(_batch(series)).to_pandas()
    assert out[out.unique_id == "short"].LSTM.isna().all() and out[out.unique_id == "a"].LSTM.notna().all()
    for uid, values in series.items():
        rows = out[out.unique_id == uid]
        scale = mase_scale(SeriesBlock([np.asarray(values)]), np.array([len(values)]), 4)[0]
        spread = rows[["LSTM", "Theta", "DampedTrend", "SES"]].std(axis=1, ddof=0).mean()
        assert spread > 0
        unit = scale + intervals.SPREAD_WEIGHT * spread
        np.testing.assert_allclose(rows["forecast-hi-80"] - rows.forecast, np.array(quantiles[0]) * unit)
        np.testing.assert_allclose(rows.forecast - rows["forecast-lo-95"], np.array(quantiles[1]) * unit)


def test_the_predictor_draws_a_short_series_interval_from_its_length_groups_quantiles(tmp_path):
    """A series too short for the network (4 points for horizon 3: group [4, 5)) takes its group's quantiles
    from the checkpoint, a network series the validated series' ones; the same short series under a
    calibration without groups (older checkpoints) takes the validated ones too."""
    quantiles = [[0.5, 1.0, 1.5], [1.0, 2.0, 3.0]]
    short = {"edges": intervals.short_groups(HORIZON).tolist(),  # [2, 3, 4, 5]
             "quantiles": [[[9.0, 9.0, 9.0], [9.5, 9.5, 9.5]], None, [[2.0, 2.5, 3.0], [4.0, 5.0, 6.0]]]}
    rng = np.random.default_rng(7)
    series = {"a": 100 + np.arange(30.0) + rng.normal(0, 5, 30), "short": [5.0, 7.0, 6.0, 9.0]}
    drawn = {}
    for name, calibration in (("groups", {"levels": [80, 95], "quantiles": quantiles, "unit": "spread",
                                          "short": short}),
                              ("old", {"levels": [80, 95], "quantiles": quantiles, "unit": "spread"})):
        predictor = SeriesPredictor(_checkpoint(tmp_path / name, calibration), **OPTIONS, levels=(80, 95))
        out = predictor(_batch(series)).to_pandas()
        drawn[name] = {uid: rows for uid, rows in out.groupby("unique_id")}
    for uid, expected in (("a", quantiles), ("short", short["quantiles"][2])):
        rows = drawn["groups"][uid]
        unit = (rows["forecast-hi-80"] - rows.forecast).to_numpy() / np.array(expected[0])
        np.testing.assert_allclose(unit, unit[0])  # one unit per series: the quantiles are the expected ones
        np.testing.assert_allclose(rows.forecast - rows["forecast-lo-95"], np.array(expected[1]) * unit[0])
    np.testing.assert_allclose(drawn["old"]["a"]["forecast-hi-95"], drawn["groups"]["a"]["forecast-hi-95"])
    old = drawn["old"]["short"]
    np.testing.assert_allclose((old["forecast-hi-80"] - old.forecast) / np.array(quantiles[0]), unit[0])


def test_realised_errors_calibrate_each_step_that_has_enough_of_them_and_no_other():
    """A step with at least 19 errors (the 95 % rank's minimum) gets the histogram's conformal quantiles,
    one with fewer none (null: the validation window's stays); no step with enough: no record."""
    rng = np.random.default_rng(11)
    counts = np.zeros((HORIZON, intervals.BINS))
    errors = _errors(rng, 200)
    counts[0] = intervals.error_histogram(errors[:, :1], np.zeros((200, 1)), np.ones(200))[0]
    counts[1] = intervals.error_histogram(errors[:18, 1:2], np.zeros((18, 1)), np.ones(18))[0]
    counts[2] = intervals.error_histogram(errors[:19, 2:3], np.zeros((19, 1)), np.ones(19))[0]
    record = intervals.realised_record(counts, [80, 95], "spread", ["2026-01-01"])
    assert record["errors"] == [200, 18, 19] and record["origins"] == ["2026-01-01"] and record["unit"] == "spread"
    assert record["quantiles"][0][1] is None and record["quantiles"][1][1] is None
    for step in (0, 2):
        expected = intervals.quantiles(counts[step:step + 1], [80, 95])[:, 0]
        np.testing.assert_allclose([record["quantiles"][0][step], record["quantiles"][1][step]], expected)
    read = intervals.read_realised(record)
    assert read.unit == "spread" and np.isnan(read.quantiles[95][1])
    np.testing.assert_allclose(read.quantiles[80][[0, 2]], np.array(record["quantiles"][0], dtype=float)[[0, 2]])
    counts[0] = counts[2] = counts[1]
    assert intervals.realised_record(counts, [80, 95], "spread", ["2026-01-01"]) is None
    assert intervals.read_realised(None) is None


def test_the_predictor_draws_the_network_series_calibrated_steps_from_the_realised_errors(tmp_path):
    """Realised quantiles (in their own unit) replace the checkpoint's at the steps they calibrate, on the
    series the network forecast; other steps, and the series too short for the network, keep the
    checkpoint's; a level the realised errors did not calibrate keeps the checkpoint's everywhere."""
    quantiles = [[0.5, 1.0, 1.5], [1.0, 2.0, 3.0]]
    calibration = {"levels": [80, 95], "quantiles": quantiles, "unit": "mase"}
    realised = {"unit": "spread", "levels": [80], "quantiles": [[0.7, None, 2.5]], "errors": [30, 3, 30],
                "origins": ["2020-09-01"]}
    rng = np.random.default_rng(4)
    series = {"a": 100 + np.arange(30.0) + rng.normal(0, 5, 30), "short": [5.0, 7.0, 6.0, 9.0]}
    out = {}
    for name, extra in (("plain", {}), ("realised", {"realised": realised})):
        predictor = SeriesPredictor(_checkpoint(tmp_path / name, calibration), **OPTIONS, levels=(80, 95), **extra)
        out[name] = {uid: rows.reset_index(drop=True) for uid, rows in predictor(_batch(series)).to_pandas().groupby(
            "unique_id")}
    a, plain = out["realised"]["a"], out["plain"]["a"]
    scale = mase_scale(SeriesBlock([np.asarray(series["a"])]), np.array([30]), 4)[0]
    unit = scale + intervals.SPREAD_WEIGHT * a[["LSTM", "Theta", "DampedTrend", "SES"]].std(axis=1, ddof=0).mean()
    np.testing.assert_allclose((a["forecast-hi-80"] - a.forecast)[[0, 2]], np.array([0.7, 2.5]) * unit)
    np.testing.assert_allclose((a.forecast - a["forecast-lo-80"])[[0, 2]], np.array([0.7, 2.5]) * unit)
    np.testing.assert_allclose(a["forecast-hi-80"][1], plain["forecast-hi-80"][1])
    for column in ("forecast", "forecast-lo-95", "forecast-hi-95"):
        np.testing.assert_allclose(a[column], plain[column])
    for column in ("forecast-lo-80", "forecast-hi-80", "forecast-lo-95", "forecast-hi-95"):
        np.testing.assert_allclose(out["realised"]["short"][column], out["plain"]["short"][column])


def test_a_checkpoint_without_calibration_gives_empty_interval_columns(tmp_path):
    """A checkpoint from before the calibration, or a level it was not calibrated for: the columns are
    there (one schema for every partition), their values null."""
    calibration = {"levels": [80], "quantiles": [[0.5, 1.0, 1.5]]}
    predictor = SeriesPredictor(_checkpoint(tmp_path / "a", calibration), **OPTIONS, levels=(80, 95))
    out = predictor(_batch({"a": np.arange(30.0)})).to_pandas()
    assert out["forecast-hi-80"].notna().all() and out["forecast-hi-95"].isna().all()
    old = SeriesPredictor(_checkpoint(tmp_path / "b", None), **OPTIONS, levels=(80,))
    assert old(_batch({"a": np.arange(30.0)})).to_pandas()["forecast-lo-80"].isna().all()


def test_a_series_never_below_zero_gets_no_negative_forecast_or_bound(tmp_path):
    """model.nonnegative=auto floors `forecast` and its bounds at zero where the history never went below it
    (a count falling towards zero); a series with a negative value keeps its negative bounds."""
    calibration = {"levels": [80, 95], "quantiles": [[2.0, 3.0, 4.0], [4.0, 6.0, 8.0]]}
    rng = np.random.default_rng(5)
    series = {"falling": np.maximum(30.0 - 1.5 * np.arange(24) + rng.normal(0, 1, 24), 0.0),
              "signed": 3.0 * np.sin(np.arange(24)) + rng.normal(0, 1, 24)}
    out = {rule: SeriesPredictor(_checkpoint(tmp_path / rule, calibration), **{**OPTIONS, "nonnegative": rule},
                                 levels=(80, 95))(_batch(series)).to_pandas() for rule in ("auto", "none")}
    columns = ["forecast", "forecast-lo-80", "forecast-hi-80", "forecast-lo-95", "forecast-hi-95"]
    falling = {rule: table[table.unique_id == "falling"][columns].to_numpy() for rule, table in out.items()}
    assert (falling["none"][:, 3] < 0).any()  # the unfloored 95 % interval reaches below zero
    np.testing.assert_array_equal(falling["auto"][:, 0], np.maximum(falling["none"][:, 0], 0.0))
    assert (falling["auto"] >= 0).all() and (falling["auto"][:, 3] == 0).any()
    signed = {rule: table[table.unique_id == "signed"][columns].to_numpy() for rule, table in out.items()}
    np.testing.assert_array_equal(signed["auto"], signed["none"])
    assert (signed["auto"][:, 3] < 0).any()
