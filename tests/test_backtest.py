"""Backtest: metrics against hand-computed values, the cut (no look-ahead), and one run through Ray."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forecaster import backtest as bt
from forecaster import intervals
from forecaster.cli import main
from forecaster.config import load_config
from forecaster.evaluate import coverage, forecast_scores, mae, mase, mase_scale, pinball, rmse, smape
from forecaster.features import SeriesBlock
from forecaster.synthetic import seasonal_series
from forecaster.theta import partner_name

HUGE = 1e30


def test_point_metrics_by_hand():
    actual, forecast = np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([[2.0, 2.0, 5.0, 0.0]])  # errors 1, 0, 2, 4
    assert mae(actual, forecast)[0] == pytest.approx(7 / 4)
    assert rmse(actual, forecast)[0] == pytest.approx(np.sqrt(21 / 4))
    assert smape(actual, forecast)[0] == pytest.approx(100 * (2 / 3 + 0 + 4 / 8 + 8 / 4) / 4)
    # in-sample part 0, 1, 0.5, 1.5, 1 with season 2: lag-2 differences 0.5, 0.5, 0.5
    scale = mase_scale(SeriesBlock([np.array([0.0, 1.0, 0.5, 1.5, 1.0])]), np.array([5]), season=2)
    assert scale[0] == pytest.approx(0.5)
    assert mase(actual, forecast, scale)[0] == pytest.approx(1.75 / 0.5)
    scores = forecast_scores(actual, forecast, scale)
    assert scores["pinball"][0] == pytest.approx(1.75 / 2)  # a point forecast at quantile 0.5: MAE / 2
    assert scores["mase"][0] == pytest.approx(3.5) and scores["rmse"][0] == pytest.approx(np.sqrt(5.25))


def test_quantile_metrics_by_hand():
    actual = np.array([[10.0, 10.0]])
    # median 9, 12; 10 % quantile 8, 8; 90 % quantile 11, 9
    forecast = np.array([[[9.0, 8.0, 11.0], [12.0, 8.0, 9.0]]])
    # errors actual - forecast: step 1 (1, 2, -1), step 2 (-2, 2, 1); loss q*e if e >= 0 else (q-1)*e:
    # step 1: 0.5*1, 0.1*2, 0.1*1; step 2: 0.5*2, 0.1*2, 0.9*1 -> mean of the six
    assert pinball(actual, forecast, [0.5, 0.1, 0.9])[0] == pytest.approx((0.5 + 0.2 + 0.1 + 1.0 + 0.2 + 0.9) / 6)
    assert coverage(actual, forecast[..., 1], forecast[..., 2])[0] == 0.5  # 10 > 9 at step 2
    assert np.isnan(coverage(actual, np.array([[8.0, np.nan]]), forecast[..., 2]))[0]


def test_missing_forecast_is_not_a_perfect_score():
    scores = forecast_scores(np.array([[1.0, 2.0]]), np.full((1, 2), np.nan), np.array([1.0]))
    assert all(np.isnan(v[0]) for v in scores.values())  # sMAPE alone would give 0


def _rows() -> pa.Table:
    """Series a (6 points), b (3), c (2); the last 2 points of each are HUGE; a covariate list as long as y
    and a static list of another length."""
    y = [[1.0, 2, 3, 4, HUGE, HUGE], [5.0, HUGE, HUGE], [HUGE, HUGE]]
    return pa.table({"unique_id": ["a", "b", "c"], "ds": [list(range(6)), list(range(3)), list(range(2))], "y": y,
                     "price": [[v * 2 for v in row] for row in y], "static": [[7.0]] * 3, "store": ["s1", "s2", "s3"]})


@pytest.mark.parametrize("sliced", [False, True])
def test_cut_hides_every_point_at_or_after_the_cutoff(sliced):
    rows = _rows()
    if sliced:  # a block that is a slice of a bigger one: list offsets do not start at 0
        rows = pa.concat_tables([_rows().slice(0, 1), rows]).combine_chunks().slice(1)
    cut = bt.cut_series(rows, hidden=2)
    assert cut.column_names == rows.column_names
    got = cut.to_pydict()
    assert dict(zip(got["unique_id"], got["y"], strict=True)) == {"a": [1, 2, 3, 4], "b": [5]}  # c: nothing left
    assert max(v for row in got["y"] + got["price"] for v in row) < HUGE
    assert got["price"] == [[2, 4, 6, 8], [10]] and got["ds"] == [[0, 1, 2, 3], [0]]
    assert got["static"] == [[7.0], [7.0]] and got["store"] == ["s1", "s2"]
    truth = bt.actual_points(rows, hidden=3, horizon=2).to_pydict()
    assert dict(zip(truth["unique_id"], truth["actual"], strict=True)) == {"a": [4, HUGE]}  # b, c: too short


def test_cut_turns_hidden_known_future_values_into_the_horizon_part():
    rows = pa.table({"unique_id": ["a"], "y": [[1.0, 2, 3, 4, 5, 6]], "future:promo": [[0.0, 1, 0, 1, 1, 0]]})
    cut = bt.cut_series(rows, hidden=3, horizon=2).to_pydict()
    assert cut["y"] == [[1, 2, 3]] and cut["future:promo"] == [[0, 1, 0]]
    assert cut["horizon:promo"] == [[1, 1]]  # the first 2 hidden values: known ahead at the cutoff


def test_windows_hide_horizon_plus_steps():
    assert [bt.hidden_points(6, 3, 2, k) for k in range(3)] == [10, 8, 6]


def test_aggregate_compares_models_on_the_same_series():
    frame = pd.DataFrame({"window": [0, 0, 0], "unique_id": ["a", "b", "c"], "metric": ["mae"] * 3,
                          "LSTM": [1.0, np.nan, 3.0], "forecast": [1.0, 5.0, 3.0], "no_fallback": [1.0, 5.0, 2.0],
                          "Naive": [2.0, 5.0, 4.0],
                          "SeasonalNaive": [2.0, 5.0, np.nan], "Theta": [1.5, 4.0, 3.5],
                          "DampedTrend": [1.2, 4.5, 3.0], "SES": [1.4, 4.2, 3.2], "OptimizedTheta": [1.3, 4.1, 3.1]})
    row = bt.aggregate(frame, ["window"]).iloc[0]
    assert row.series == 1 and row.LSTM == 1.0 and row.Naive == 2.0  # b lacks LSTM, c lacks SeasonalNaive
    assert row.Theta == 1.5 and row.DampedTrend == 1.2 and row.SES == 1.4 and row.OptimizedTheta == 1.3


def test_the_report_marks_the_lowest_only_among_two_or_more_models_and_never_for_coverage_or_width():
    from forecaster.report_backtest import metric_table

    means = {"mase": {"forecast": 1.2, "LSTM": 1.1, "series": 5}, "msis_80": {"forecast": 9.0, "series": 5},
             "msis_95": {"forecast": 18.0, "LSTM": 17.0, "series": 5},
             "coverage_80": {"forecast": 0.7, "LSTM": 0.9, "series": 5}, "width_80": {"forecast": 4.0, "LSTM": 3.0}}
    table = metric_table(means, ["forecast", "LSTM"])
    marked = {row["metric"]: [best for _, best in row["cells"]] for row in table["rows"]}
    assert marked == {"mase": [False, True], "msis_80": [False, False], "msis_95": [False, True],
                      "coverage_80": [False, False], "width_80": [False, False]}


def test_a_window_counts_the_earlier_windows_errors_at_the_steps_it_has_seen():
    """windows 3, horizon 4, step 2: 8, 6 and 4 points hidden. The last window sees all 4 steps of the
    first's forecast, the first 2 of the second's; a step needs 4 errors for 80 %."""
    cfg = load_config(None, ["data.uri=x", "data.freq=MS", "model.horizon=4", "output.uri=y", "run.date=2024-01-01",
                             "model.levels=[80]", "model.interval_calibration=realised"])
    one = np.zeros((4, intervals.BINS))
    one[:, 600] = 3  # 3 errors a step, all in bin 600
    earlier = [(0, 8, one), (1, 6, one.copy())]
    record = bt.realised(cfg, earlier, hidden=4)
    assert record["errors"] == [6, 6, 3, 3] and record["origins"] == ["window 0", "window 1"]
    assert record["quantiles"][0][2:] == [None, None] and record["quantiles"][0][0] == intervals.EDGES[601]
    note = "; intervals on the errors of window 0 and window 1 at steps 1-2"  # what the console says
    assert bt._intervals_note({"realised": record}) == note
    assert bt.realised(cfg, earlier[:1], hidden=6) is None  # the first 2 steps seen, 3 errors each: too few
    assert bt.realised(cfg, [], hidden=8) is None


def test_bad_window_count_stops_before_any_work(capsys):
    assert main(["backtest", "--windows", "0"]) == 2
    assert "--windows=0" in capsys.readouterr().err


# ---- through Ray -------------------------------------------------------------------------------

HORIZON = 4


@pytest.fixture(scope="module")
def backtest_run(ray_session, tmp_path_factory):
    data, out = tmp_path_factory.mktemp("input"), tmp_path_factory.mktemp("output")
    good = seasonal_series(12, (30, 40), freq="MS", seed=5, noise=0.05).to_pandas()
    short = pd.DataFrame({"unique_id": "short", "ds": pd.date_range("2015-01-01", periods=7, freq="MS"),
                          "y": np.arange(7.0) + 1})
    pq.write_table(pa.Table.from_pandas(pd.concat([good, short]), preserve_index=False), data / "series.parquet")
    trained = []
    real_train = bt.train_clean

    def spy(cfg, clean, counts):  # what each window hands to training
        trained.append(clean.to_pandas())
        return real_train(cfg, clean, counts)

    bt.train_clean = spy
    try:
        settings = [f"data.uri={data}", f"output.uri={out}", f"model.horizon={HORIZON}", "run.date=2024-06-01",
                    "model.loss=quantile", "model.levels=[80]", "model.hidden_size=16", "train.max_epochs=2",
                    "train.refit_epochs=0", "train.windows_per_series=8", "model.fallback=validation",
                    "train.num_workers=1", "model.interval_calibration=realised"]
        code = main(["backtest", "--windows", "2", *(a for s in settings for a in ("--set", s))])
    finally:
        bt.train_clean = real_train
    return code, pd.concat([good, short]), out / "backtests" / "forecast_date=2024-06-01", trained


def test_backtest_files_windows_and_cutoffs(backtest_run):
    code, frame, out, trained = backtest_run
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["overall.parquet", "series.parquet", "skipped.parquet",
                                                     "summary.json", "windows.parquet"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["windows"] == 2 and [w["hidden"] for w in summary["per_window"]] == [8, 4]
    series = pd.read_parquet(out / "series.parquet")
    assert sorted(series.window.unique()) == [0, 1]
    ds = frame.groupby("unique_id").ds.apply(list)
    for (uid, window), rows in series.groupby(["unique_id", "window"]):
        hidden = 8 if window == 0 else 4
        assert (rows.cutoff == ds[uid][-hidden - 1]).all(), (uid, window)
    # no point of the hidden part reaches training: each series arrives cut by exactly `hidden` points
    for rows, hidden in zip(trained, (8, 4), strict=True):
        for uid, y in zip(rows.unique_id, rows.y, strict=True):
            np.testing.assert_array_equal(y, frame[frame.unique_id == uid].y.to_numpy()[:-hidden])
    skipped = pd.read_parquet(out / "skipped.parquet")
    assert skipped[["unique_id", "window", "reason"]].values.tolist() == [["short", 0, "no_history"]]
    assert set(series[series.window == 1].unique_id) == set(frame.unique_id)  # short: scored by the baselines
    assert series[(series.unique_id == "short") & (series.metric == "mae")].LSTM.isna().all()
    assert summary["per_window"][1]["counts"]["lstm_scored"] == 12
    lines = bt.summary_lines(summary)  # what the CLI printed
    assert lines[0] == "backtest: 2 window(s), horizon 4, step 4" and "1 without history" in lines[1]
    for line, window in zip(lines[1:3], summary["per_window"], strict=True):  # model.statistical=auto, per window
        chosen = window["training"]["statistical"]["chosen"]
        assert chosen in ("otm_damped", "theta_ses") and line.endswith(f"; partner {partner_name(chosen)}")
    assert [line.split()[:2] for line in lines if line.startswith("mase")] == [["mase", "0"], ["mase", "1"],
                                                                               ["mase", "all"]]


def test_backtest_metrics_are_finite(backtest_run):
    out = backtest_run[2]
    windows, overall = pd.read_parquet(out / "windows.parquet"), pd.read_parquet(out / "overall.parquet")
    assert list(overall.metric) == ["mase", "smape", "mae", "rmse", "pinball", "coverage_80", "width_80", "msis_80"]
    assert len(windows) == 2 * len(overall)
    points = windows[~windows.metric.isin(["coverage_80", "width_80", "msis_80"])]
    assert np.isfinite(points[list(bt.MODELS)].to_numpy()).all() and (points.series == 12).all()
    series = pd.read_parquet(out / "series.parquet")
    # model.fallback=validation: where it kept the network, no_fallback is the forecast; where it chose
    # seasonal naive (nearly exact on these seasonal series), no_fallback is still the network's forecast
    point = ~series.metric.str.startswith(("coverage", "width", "msis"))  # no_fallback has no intervals
    network = series[series.model.str.startswith("LSTM+Theta+") & point]  # + the partner auto chose
    assert np.allclose(network.no_fallback, network.forecast, equal_nan=True)
    fell_back = series[(series.model == "SeasonalNaive") & series.LSTM.notna() & (series.metric == "mae")]
    assert len(fell_back), "the barely trained network never lost to seasonal naive: no fallback to check"
    np.testing.assert_allclose(fell_back.forecast, fell_back.SeasonalNaive)
    assert (fell_back.no_fallback != fell_back.forecast).all()
    cover, width = overall.set_index("metric").loc["coverage_80"], overall.set_index("metric").loc["width_80"]
    # the LSTM's quantile interval and the calibrated interval of `forecast`
    assert 0 <= cover.LSTM <= 1 and 0 <= cover.forecast <= 1 and np.isnan(cover.Naive)
    assert width.LSTM > 0 and width.forecast > 0 and np.isnan(width.Naive)
    # the interval score is the width plus the misses' penalty: the width alone where the interval covered all
    wide = series.pivot_table(index=["unique_id", "window"], columns="metric", values="forecast")
    assert (wide.msis_80 >= wide.width_80 - 1e-9).all()
    np.testing.assert_allclose(wide.msis_80[wide.coverage_80 == 1], wide.width_80[wide.coverage_80 == 1])
    assert (wide.msis_80[wide.coverage_80 < 1] > wide.width_80[wide.coverage_80 < 1]).all()


def test_a_later_window_draws_its_intervals_from_the_errors_of_the_earlier_ones(backtest_run):
    """model.interval_calibration=realised: window 1 sees the 4 points window 0 forecast, so every step is
    calibrated on window 0's errors there, over the series the network forecast (not those the fallback
    gave to seasonal naive), as a nightly run would on the run one horizon earlier; window 0 has no
    earlier window (the validation window's)."""
    out = backtest_run[2]
    summary = json.loads((out / "summary.json").read_text())
    first, second = (w["intervals"] for w in summary["per_window"])
    assert first == {"calibration": "realised", "realised": None}
    series = pd.read_parquet(out / "series.parquet")
    network = series[(series.window == 0) & (series.metric == "mae") & series.model.str.startswith("LSTM")]
    realised = second["realised"]
    assert 4 <= len(network) <= 12  # levels [80]: 4 errors a step suffice
    assert realised["errors"] == [len(network)] * HORIZON and realised["origins"] == ["window 0"]
    assert realised["levels"] == [80] and all(q is not None and q > 0 for q in realised["quantiles"][0])
    lines = bt.summary_lines(summary)  # what the console says of each window
    assert "intervals on" not in lines[1] and "; intervals on the errors of window 0; partner" in lines[2]


def test_backtest_writes_its_report(backtest_run):
    out = backtest_run[2]
    page = out.parent.parent / "reports" / "backtests" / "forecast_date=2024-06-01.html"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["report"] == str(page) and page.stat().st_size > 10_000
    assert ">Metrics over all windows</h2>" in page.read_text() and f"report: {page}" in bt.summary_lines(summary)
