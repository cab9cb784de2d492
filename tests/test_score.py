"""Scoring earlier forecasts against the actuals that arrived since (forecaster/score.py).

The expected values are computed here with pandas from the long rows, independently of the
vectorised code: a join on (unique_id, ds), then the metric definitions written out.
"""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forecaster import intervals
from forecaster.score import Origin, _columns, calibrating, error_block, find_origins, score_block, summarise
from forecaster.storage import resolve

SEASON = 4
FREQ = "QS"


def _series_rows(frame: pd.DataFrame, reasons: dict | None = None) -> pa.Table:
    """Validated series rows (as forecaster.validate makes them) from long (unique_id, ds, y) rows."""
    reasons = reasons or {}
    rows = []
    for uid, part in frame.sort_values("ds").groupby("unique_id", sort=True):
        rows.append({"unique_id": uid, "y": part["y"].tolist(), "first_ds": part["ds"].min(),
                     "last_ds": part["ds"].max(), "length": len(part), "reject_reason": reasons.get(uid)})
    table = pd.DataFrame(rows)
    return pa.table({
        "unique_id": pa.array(table["unique_id"], pa.string()),
        "y": pa.array(table["y"], pa.list_(pa.float64())),
        "first_ds": pa.array(table["first_ds"].to_numpy().astype("datetime64[us]")),
        "last_ds": pa.array(table["last_ds"].to_numpy().astype("datetime64[us]")),
        "length": pa.array(table["length"], pa.int64()),
        "reject_reason": pa.array(table["reject_reason"], pa.string()),
    })


def _history(uid: str, start: str, values) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=len(values), freq=FREQ),
                         "y": np.asarray(values, dtype=float)})


def _forecast(uid: str, cutoff: str, horizon: int, rng) -> pd.DataFrame:
    ds = pd.date_range(cutoff, periods=horizon + 1, freq=FREQ)[1:]
    lstm = rng.normal(100, 10, horizon)
    return pd.DataFrame({
        "unique_id": uid, "ds": ds, "LSTM": lstm, "LSTM-lo-80": lstm - 8, "LSTM-hi-80": lstm + 8,
        "SeasonalNaive": rng.normal(100, 10, horizon), "forecast": rng.normal(100, 10, horizon),
        "model": "LSTM", "cutoff": pd.Timestamp(cutoff),
    })


def _expected(forecasts: pd.DataFrame, today: pd.DataFrame, models, season: int) -> pd.DataFrame:
    """One row per (series, model) by the definitions: join on ds, drop NaN actuals, mean errors."""
    rows = []
    joined = forecasts.merge(today, on=["unique_id", "ds"], how="inner")
    for uid, part in joined.groupby("unique_id"):
        history = today[(today.unique_id == uid) & (today.ds <= part["cutoff"].iloc[0])].sort_values("ds")["y"]
        lag = season if len(history) > season else 1
        scale = np.abs(history.to_numpy()[lag:] - history.to_numpy()[:-lag]).mean()
        part = part[np.isfinite(part["y"])]
        for model in models:
            error = (part["y"] - part[model]).abs()
            row = {"unique_id": uid, "model": model, "points": len(part), "mae": error.mean(),
                   "mase": error.mean() / scale,
                   "smape": (200 * error / (part["y"].abs() + part[model].abs())).mean()}
            if f"{model}-lo-80" in part:
                row["coverage-80"] = ((part["y"] >= part[f"{model}-lo-80"])
                                      & (part["y"] <= part[f"{model}-hi-80"])).mean()
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture
def case():
    rng = np.random.default_rng(4)
    h = 6
    # a: 16 points at the origin, 4 more today (one of them NaN); b: 3 more today; c: no new point;
    # gone: not in today's input; bad: rejected today for irregular timestamps; allnan: only NaN since
    a = rng.normal(100, 10, 20)
    a[17] = np.nan
    today = pd.concat([
        _history("a", "2010-01-01", a),
        _history("b", "2012-01-01", rng.normal(50, 5, 11)),
        _history("c", "2011-01-01", rng.normal(80, 5, 10)),
        _history("bad", "2011-01-01", rng.normal(80, 5, 12)),
        _history("allnan", "2011-01-01", np.r_[rng.normal(80, 5, 10), np.nan, np.nan]),
    ])
    forecasts = pd.concat([
        _forecast("a", "2013-10-01", h, rng),  # the 16th quarter of a
        _forecast("b", "2013-10-01", h, rng),  # 8 points at the origin
        _forecast("c", "2013-04-01", h, rng),  # its last point today
        _forecast("gone", "2013-10-01", h, rng),
        _forecast("bad", "2013-04-01", h, rng),
        _forecast("allnan", "2013-04-01", h, rng),
    ], ignore_index=True)
    series = _series_rows(today, {"bad": "irregular_timestamps", "allnan": "non_finite_y"})
    return forecasts, today, series


def _arrow(forecasts: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(forecasts, preserve_index=False)
    table = table.set_column(table.schema.get_field_index("ds"), "ds",
                             pa.array(forecasts["ds"].to_numpy().astype("datetime64[us]")))
    table = table.set_column(table.schema.get_field_index("cutoff"), "cutoff",
                             pa.array(forecasts["cutoff"].to_numpy().astype("datetime64[us]")))
    return table


def _blocks(series: pa.Table, chunks: int) -> list[pa.Table]:
    step = int(np.ceil(series.num_rows / chunks))
    return [series.slice(i, step) for i in range(0, series.num_rows, step)]


def _score(forecasts: pd.DataFrame, series: pa.Table, chunks: int = 1) -> pd.DataFrame:
    table = _arrow(forecasts)
    models, bounds = _columns(table.schema)
    out = score_block(table, series=_blocks(series, chunks), origin="2014-01-01", models=models,
                      levels=sorted({lv for v in bounds.values() for lv in v}), freq=FREQ, season=SEASON)
    return out.to_pandas()


@pytest.mark.parametrize("chunks", [1, 3])
def test_scores_equal_a_hand_computation(case, chunks):
    forecasts, today, series = case
    got = _score(forecasts, series, chunks)
    scored = got[got.status == "scored"].sort_values(["unique_id", "model"]).reset_index(drop=True)
    usable = forecasts[forecasts.unique_id.isin(["a", "b"])]
    expected = _expected(usable, today, ["LSTM", "SeasonalNaive", "forecast"], SEASON)
    expected = expected.sort_values(["unique_id", "model"]).reset_index(drop=True)
    assert scored[["unique_id", "model"]].equals(expected[["unique_id", "model"]])
    np.testing.assert_array_equal(scored["points"], expected["points"])
    for metric in ("mae", "mase", "smape"):
        np.testing.assert_allclose(scored[metric], expected[metric], rtol=1e-9, atol=0)
    lstm = scored.model == "LSTM"
    np.testing.assert_allclose(scored.loc[lstm, "coverage-80"], expected.loc[lstm, "coverage-80"], rtol=1e-9)
    assert scored.loc[~lstm, "coverage-80"].isna().all()  # no interval for those models
    a = scored[scored.unique_id == "a"]
    assert (a["points"] == 3).all() and (a["nan_points"] == 1).all()  # 4 steps due, one NaN
    assert (scored[scored.unique_id == "b"]["points"] == 3).all()


def test_every_forecast_series_has_a_row_with_its_status(case):
    forecasts, _, series = case
    got = _score(forecasts, series)
    status = got.groupby("unique_id")["status"].agg(set).to_dict()
    assert status == {"a": {"scored"}, "b": {"scored"}, "c": {"pending"}, "gone": {"absent"},
                      "bad": {"rejected"}, "allnan": {"no_actuals"}}
    unscored = got[got.status != "scored"]
    assert unscored["model"].isna().all() and (unscored["points"] == 0).all()
    assert unscored[unscored.unique_id == "allnan"]["nan_points"].item() == 2


def test_a_model_without_a_forecast_for_a_series_gets_no_row(case):
    forecasts, _, series = case
    forecasts = forecasts.copy()
    forecasts.loc[forecasts.unique_id == "b", ["LSTM", "LSTM-lo-80", "LSTM-hi-80"]] = np.nan  # too short for it
    got = _score(forecasts, series)
    b = got[(got.unique_id == "b") & (got.status == "scored")]
    assert set(b["model"]) == {"SeasonalNaive", "forecast"}


def test_summary_means_per_origin_and_model(case, tmp_path):
    import pyarrow.parquet as pq

    forecasts, _, series = case
    got = _score(forecasts, series)
    later = got.copy()
    later["origin_date"] = "2014-02-01"
    for i, part in enumerate((got, later)):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), tmp_path / f"{i}.parquet")
    summary = summarise([str(tmp_path / "0.parquet"), str(tmp_path / "1.parquet")],
                        pa.fs.LocalFileSystem())
    assert [o["origin_date"] for o in summary] == ["2014-02-01", "2014-01-01"]
    origin = summary[1]
    assert origin["series"] == {"scored": 2, "absent": 1, "rejected": 1, "pending": 1, "no_actuals": 1}
    assert origin["nan_points"] == 1 + 2
    assert origin["steps"] == 3
    lstm = got[(got.status == "scored") & (got.model == "LSTM")]
    assert origin["models"]["LSTM"]["mase"] == pytest.approx(lstm["mase"].mean(), rel=1e-12)
    covered = (lstm["coverage-80"] * lstm["points"]).sum() / lstm["points"].sum()
    assert origin["models"]["LSTM"]["coverage-80"] == pytest.approx(covered, rel=1e-12)
    assert "coverage-80" not in origin["models"]["forecast"]


@pytest.mark.parametrize("horizon", [4, 8])
def test_realised_errors_are_the_networks_forecasts_against_todays_actuals_in_the_predictors_unit(case, horizon):
    """error_block: per step after the cutoff, the histogram of |actual - forecast| / unit over the scored
    series whose `model` names the LSTM, the unit being the MASE scale up to the cutoff plus the spread of
    the origin's LSTM, Theta, DampedTrend and SES forecasts over all its steps (as the predictor drew
    them); by hand with pandas here. A series the partner forecast (too short for the network) counts no
    error; steps beyond the origin's 6 count none, steps beyond `horizon` are not asked for."""
    forecasts, today, series = case
    rng = np.random.default_rng(8)
    forecasts = forecasts.copy()
    for name in intervals.SPREAD_METHODS:
        forecasts[name] = rng.normal(100, 10, len(forecasts))
    forecasts.loc[forecasts.unique_id == "b", "model"] = "LSTM+Theta+SES"
    partner = forecasts[forecasts.unique_id == "a"].assign(unique_id="p", model="Theta+SES")
    today = pd.concat([today, today[today.unique_id == "a"].assign(unique_id="p")])
    forecasts = pd.concat([forecasts, partner], ignore_index=True)
    series = _series_rows(today, {"bad": "irregular_timestamps", "allnan": "non_finite_y"})
    got = error_block(_arrow(forecasts).select(["unique_id", "ds", "cutoff", "model", "forecast", "LSTM",
                                                *intervals.SPREAD_METHODS]),
                      series=_blocks(series, 2), origin="2014-01-01", freq=FREQ, season=SEASON, horizon=horizon,
                      rule="spread")
    assert got["step"].to_pylist() == list(range(horizon)) and set(got["origin"].to_pylist()) == {"2014-01-01"}
    counts = np.stack(got["counts"].to_numpy(zero_copy_only=False))

    errors = np.full((2, horizon), np.nan)  # a and b: the scored series the network forecast
    for row, uid in enumerate(("a", "b")):
        mine = forecasts[forecasts.unique_id == uid].sort_values("ds").reset_index(drop=True)
        cutoff = mine["cutoff"].iloc[0]
        history = today[(today.unique_id == uid) & (today.ds <= cutoff)].sort_values("ds")["y"].to_numpy()
        scale = np.abs(history[SEASON:] - history[:-SEASON]).mean()
        spread = mine[["LSTM", *intervals.SPREAD_METHODS]].std(axis=1, ddof=0).mean()
        unit = scale + intervals.SPREAD_WEIGHT * spread
        joined = mine.merge(today[today.unique_id == uid], on=["unique_id", "ds"], how="left")
        for step, (y, f) in enumerate(zip(joined["y"], joined["forecast"], strict=True)):
            if step < horizon and np.isfinite(y):
                errors[row, step] = abs(y - f) / unit
    expected = intervals.error_histogram(errors, np.zeros_like(errors), np.ones(2))
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == 6  # a: 3 of its 4 steps due (one NaN), b: 3


def test_realised_errors_count_each_first_forecast_date_once_and_need_the_spreads_columns():
    """Of origins that forecast from the same first ds (nightly runs over monthly series: the same data),
    the newest counts; an origin without a column the unit is made of (an older table) counts none."""
    models = ["LSTM", *intervals.SPREAD_METHODS, "forecast"]

    def origin(date, first, columns=models):
        return Origin(date, [], [], list(columns), [], np.datetime64(first, "us"))

    origins = [origin("2026-03-03", "2026-03-01"), origin("2026-03-02", "2026-03-01"),
               origin("2026-02-02", "2026-02-01", ["LSTM", "Theta", "forecast"]), origin("2026-02-01", "2026-02-01"),
               origin("2026-01-05", "2026-01-01")]
    assert [o.date for o in calibrating(origins)] == ["2026-03-03", "2026-02-01", "2026-01-05"]


def test_calibration_reads_past_the_scored_dates_to_the_newest_date_of_each_earlier_cutoff(tmp_path):
    """Nightly runs over monthly series: 20 dates in March forecast from one cutoff. The scores table
    scores the newest score.max_origins (3) dates with a step due; the calibration takes the newest date
    of each first `ds`, up to 3 of them, reading on past the dates scored (more than READ_AHEAD of
    them) and past a table without the spread's columns, and no further than a cutoff whose every
    step is due; April's dates have nothing due yet."""
    columns = ["LSTM", *intervals.SPREAD_METHODS, "forecast"]

    def partition(date, first, names=columns):
        folder = tmp_path / "forecasts" / f"forecast_date={date}"
        folder.mkdir(parents=True)
        ds = pd.date_range(first, periods=3, freq="MS")
        table = {"unique_id": ["a"] * 3, "ds": ds, "cutoff": [ds[0] - pd.offsets.MonthBegin()] * 3,
                 "model": ["LSTM+Theta+SES"] * 3, **{name: [1.0, 2.0, 3.0] for name in names}}
        pq.write_table(pa.Table.from_pandas(pd.DataFrame(table), preserve_index=False), folder / "part-0.parquet")

    for day in (1, 2, 3):
        partition(f"2026-04-0{day}", "2026-04-01")
    for day in range(1, 21):
        partition(f"2026-03-{day:02d}", "2026-03-01")
    for day in (1, 2, 3):
        partition(f"2026-02-0{day}", "2026-02-01")
    partition("2026-01-10", "2026-01-01", ["LSTM", "Theta", "forecast"])  # written before SES and DampedTrend were
    partition("2026-01-05", "2026-01-01")  # its 3 steps, January to March, all due
    partition("2025-12-01", "2025-12-01")
    partition("2025-11-01", "2025-11-01")
    root, newest, every = resolve(str(tmp_path)), np.datetime64("2026-03-31", "us"), ("MS", 3)

    def dates(origins):
        return [o.date for o in origins]

    scored, kept = find_origins(root, "2026-05-01", newest, 3, every)
    assert dates(scored) == ["2026-03-20", "2026-03-19", "2026-03-18"]
    assert dates(kept) == ["2026-03-20", "2026-02-03", "2026-01-05"]
    assert kept[1].first_ds == np.datetime64("2026-02-01", "us")
    assert dates(find_origins(root, "2026-05-01", newest, 2, every)[1]) == ["2026-03-20", "2026-02-03"]
    scored, kept = find_origins(root, "2026-05-01", newest, 30, every)
    assert len(scored) == 27 and scored[-1].date == "2025-11-01"
    assert dates(kept) == ["2026-03-20", "2026-02-03", "2026-01-05", "2025-12-01", "2025-11-01"]  # all scored
    scored, kept = find_origins(root, "2026-05-01", newest, 20, every)  # scored: March's
    assert dates(kept) == ["2026-03-20", "2026-02-03", "2026-01-05"]  # not on to December: January covers all steps
    assert find_origins(root, "2026-05-01", newest, 3)[1] == []  # interval_calibration=validation


def test_the_origins_bench_runs(tmp_path, capsys):
    """bench/origins.py on 70 nightly dates, local disk: its figures come from the job's own find_origins."""
    from bench import origins

    def put(key, body):
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(body)

    origins.measure(str(tmp_path), put, pd.date_range("2024-01-01", periods=70, freq="D"), 1)
    printed = capsys.readouterr().out
    assert "validation one date at a time" in printed and "scored 30 dates, calibrating on 2 cutoffs" in printed
