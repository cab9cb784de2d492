"""Earlier forecasts scored by later runs, end to end through a real local Ray.

Three run dates over one synthetic set: each date's input extends the previous one by K points per
series. The scores the second run writes for the first run's forecasts must equal a pandas
computation from the first run's forecast partition.
"""

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forecaster.cli import main
from forecaster.config import load_config
from forecaster.intervals import SPREAD_METHODS, SPREAD_WEIGHT
from forecaster.manifest import summary_lines
from forecaster.pipeline import run
from forecaster.score import score_earlier
from forecaster.storage import resolve
from forecaster.synthetic import seasonal_series
from forecaster.theta import partner_name
from tests.specs import job_settings, run_command
from tests.test_score import _expected

pytestmark = pytest.mark.ray

HORIZON, K, BASE = 4, 2, 30
DATES = ("2026-01-01", "2026-01-02", "2026-01-03")


# every date forecasts with the newest earlier date's model as it is: the first finds none and trains, the
# later ones have no Ray Train run of their own
REUSE = ("train.warm_start=latest", "train.warm_epochs=0")


def _settings(data, out, date):
    return job_settings(data, out, date, HORIZON, "model.hidden_size=8", "model.num_layers=1", "train.num_workers=1",
                        "train.max_epochs=1", "train.refit_epochs=0", "train.windows_per_series=4",
                        "report.enabled=false", *REUSE)


def _config(data, out, date):
    return load_config(None, _settings(data, out, date))


def _inputs(root, full: pd.DataFrame):
    """Input folders per date: BASE points per series, then K more each date. `gone` exists only on the
    first date; `nanny` gets a NaN among its new points (rejected as non_finite_y, still scored)."""
    paths = []
    for i, date in enumerate(DATES):
        rows = full[full.groupby("unique_id").cumcount() < BASE + i * K].copy()
        if i > 0:
            rows = rows[rows.unique_id != "gone"]
            nan_at = rows[rows.unique_id == "nanny"].index[BASE]  # its first new point
            rows.loc[nan_at, "y"] = np.nan
        path = root / f"input-{date}"
        path.mkdir()
        pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), path / "part.parquet")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def runs(ray_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring")
    full = seasonal_series(12, BASE + 2 * K, freq="MS", seed=5).to_pandas()
    full["unique_id"] = full["unique_id"].replace({"s00": "gone", "s01": "nanny"})
    inputs, out = _inputs(root, full), root / "out"
    manifests = [run(_config(inputs[i], out, date)) for i, date in enumerate(DATES)]
    return {"out": out, "inputs": inputs, "full": full, "manifests": manifests}


def _scores(out, date):
    return pq.read_table(out / "scores" / f"forecast_date={date}").to_pandas()


def test_the_second_run_scores_the_first_runs_forecasts_like_pandas(runs):
    out = runs["out"]
    forecasts = pq.read_table(out / "forecasts" / f"forecast_date={DATES[0]}").to_pandas()
    today = pq.read_table(runs["inputs"][1]).to_pandas()
    scores = _scores(out, DATES[1])
    got = scores[scores.status == "scored"].sort_values(["unique_id", "model"]).reset_index(drop=True)
    models = ["DampedTrend", "LSTM", "Naive", "OptimizedTheta", "SES", "SeasonalNaive", "Theta", "forecast"]
    scored = forecasts[forecasts.unique_id.isin(today.unique_id)]
    expected = _expected(scored, today, models, season=12).sort_values(["unique_id", "model"]).reset_index(drop=True)
    assert set(got["origin_date"]) == {DATES[0]}
    assert got[["unique_id", "model"]].equals(expected[["unique_id", "model"]])
    np.testing.assert_array_equal(got["points"], expected["points"])
    for metric in ("mae", "mase", "smape"):
        np.testing.assert_allclose(got[metric], expected[metric], rtol=1e-9, atol=1e-12)
    assert (got["points"] <= K).all() and (got["points"] == K).sum() > 0
    nanny = got[got.unique_id == "nanny"]
    assert (nanny["points"] == K - 1).all() and (nanny["nan_points"] == 1).all()
    gone = scores[scores.unique_id == "gone"]
    assert gone["status"].tolist() == ["absent"] and gone["model"].isna().all()


def test_the_manifest_counts_every_series_of_the_origin(runs):
    origins = runs["manifests"][1]["scores"]["origins"]
    assert [o["origin_date"] for o in origins] == [DATES[0]]
    origin = origins[0]
    assert origin["series"]["scored"] + origin["series"]["absent"] == 12
    assert origin["series"]["absent"] == 1 and origin["nan_points"] == 1 and origin["steps"] == K
    scores = _scores(runs["out"], DATES[1])
    forecast = scores[(scores.status == "scored") & (scores.model == "forecast")]
    assert origin["models"]["forecast"]["mase"] == pytest.approx(forecast["mase"].mean(), rel=1e-12)
    written = json.loads((runs["out"] / "manifests" / f"forecast_date={DATES[1]}.json").read_text())
    assert written["scores"] == json.loads(json.dumps(runs["manifests"][1]["scores"]))
    assert written["outputs"]["scores"].endswith(f"scores/forecast_date={DATES[1]}")


def test_the_first_run_has_nothing_to_score_and_the_third_scores_both_earlier_dates(runs):
    assert _scores(runs["out"], DATES[0]).empty
    assert runs["manifests"][0]["scores"]["origins"] == []
    third = _scores(runs["out"], DATES[2])
    assert set(third["origin_date"]) == set(DATES[:2])
    first = third[(third.origin_date == DATES[0]) & (third.status == "scored")]
    assert first["points"].max() == 2 * K  # the first run's forecasts now have 2K steps observed
    assert [o["origin_date"] for o in runs["manifests"][2]["scores"]["origins"]] == [DATES[1], DATES[0]]


def _partition(out, table, date):
    return pq.read_table(out / table / f"forecast_date={date}").to_pandas()


def test_the_third_run_draws_its_intervals_from_the_realised_errors_of_the_first_two_runs(runs):
    """model.interval_calibration=realised (the default): the errors of the earlier dates' `forecast` on the
    network's series, scaled as the predictor scaled them (the MASE scale up to the cutoff plus the spread
    of the LSTM, Theta, DampedTrend and SES), by hand here; a step with 19 or more of them (the 95 %
    rank's minimum) is calibrated on their conformal quantiles (to a bin, 1.2 %), the others are left to
    the validation window. The second run had at most 11 errors a step: none."""
    out, today = runs["out"], pq.read_table(runs["inputs"][2]).to_pandas()
    errors = [[] for _ in range(HORIZON)]
    for date in DATES[:2]:
        for uid, mine in _partition(out, "forecasts", date).groupby("unique_id"):
            if uid not in set(today.unique_id) or not mine.model.iloc[0].startswith("LSTM"):
                continue
            mine = mine.sort_values("ds")
            history = today[(today.unique_id == uid) & (today.ds <= mine.cutoff.iloc[0])].sort_values("ds").y.to_numpy()
            unit = (np.abs(history[12:] - history[:-12]).mean()
                    + SPREAD_WEIGHT * mine[["LSTM", *SPREAD_METHODS]].std(axis=1, ddof=0).mean())
            joined = mine.merge(today, on=["unique_id", "ds"], how="left")
            for step, (y, f) in enumerate(zip(joined.y, joined.forecast, strict=True)):
                if np.isfinite(y):
                    errors[step].append(abs(y - f) / unit)
    second, third = runs["manifests"][1:]
    assert second["intervals"] == {"calibration": "realised", "realised": None}
    assert not any(line.startswith("intervals:") for line in summary_lines(second))  # the console says nothing
    realised = third["intervals"]["realised"]
    # step 1: "nanny"'s first new point is NaN, "gone" absent; steps 3-4 only observed for the first date
    assert realised["errors"] == [len(e) for e in errors] == [20, 21, 11, 11]
    assert realised["origins"] == [DATES[1], DATES[0]] and realised["levels"] == [80, 95]
    for row, level in zip(realised["quantiles"], realised["levels"], strict=True):
        assert row[2:] == [None, None]
        for step in (0, 1):
            ranked = sorted(errors[step])
            exact = ranked[min(int(np.ceil((len(ranked) + 1) * level / 100)), len(ranked)) - 1]
            assert exact <= row[step] <= exact * 1.012
    assert ("intervals: steps 1-2 of the network's series calibrated on 20-21 realised errors per step of the "
            f"forecasts of 2 earlier dates ({DATES[1]}, {DATES[0]}); the other steps on the validation window"
            ) in summary_lines(third)
    # what the third run wrote: each series' 80 % half-width at the first two steps is the realised quantile
    # times the series' unit now
    for uid, mine in _partition(out, "forecasts", DATES[2]).groupby("unique_id"):
        history = today[today.unique_id == uid].sort_values("ds").y.to_numpy()
        unit = (np.abs(history[12:] - history[:-12]).mean()
                + SPREAD_WEIGHT * mine[["LSTM", *SPREAD_METHODS]].std(axis=1, ddof=0).mean())
        half = (mine.sort_values("ds")["forecast-hi-80"] - mine.sort_values("ds").forecast).to_numpy()
        np.testing.assert_allclose(half[:2], np.array(realised["quantiles"][0][:2]) * unit, rtol=1e-9)


def test_dates_repeating_a_cutoff_do_not_keep_the_intervals_from_earlier_cutoffs_errors(runs, tmp_path, caplog):
    """Nightly runs over monthly series forecast from one cutoff for a month. Here a copy of the second
    date's forecasts stands as the third date's, and score.max_origins=2: the fourth date scores those
    two dates, and still calibrates on the first date's errors too (the newest date of each cutoff, up
    to max_origins cutoffs), as the third run did from the same forecasts."""
    out = tmp_path / "out"
    shutil.copytree(runs["out"] / "manifests", out / "manifests")  # warm_start=latest finds the model there
    forecasts = runs["out"] / "forecasts"
    for date, source in ((DATES[0], DATES[0]), (DATES[1], DATES[1]), (DATES[2], DATES[1])):
        shutil.copytree(forecasts / f"forecast_date={source}", out / "forecasts" / f"forecast_date={date}")
    with caplog.at_level(logging.INFO, logger="forecaster.score"):
        manifest = run(load_config(None, [*_settings(runs["inputs"][2], out, "2026-01-04"), "score.max_origins=2"]))
    logged = [r.getMessage() for r in caplog.records if r.name == "forecaster.score"]
    assert len(logged) == 1 and logged[0].startswith(f"forecasts of {DATES[2]} over ")  # the newest date only
    assert logged[0].endswith(f"; and 1 older date(s) in {out / 'scores' / 'forecast_date=2026-01-04'}")
    assert [o["origin_date"] for o in manifest["scores"]["origins"]] == [DATES[2], DATES[1]]
    realised, third = manifest["intervals"]["realised"], runs["manifests"][2]["intervals"]["realised"]
    assert realised["origins"] == [DATES[2], DATES[0]]
    assert realised["errors"] == third["errors"] == [20, 21, 11, 11]
    assert realised["quantiles"] == third["quantiles"]


def test_a_rerun_through_the_command_line_replaces_that_dates_partitions_and_keeps_the_others(runs):
    """The second date again, through the command-line contract in-process (same Ray): it rewrites that
    date's forecasts, rejects and scores only."""
    out = runs["out"]
    before = {(table, date): _partition(out, table, date) for table in ("forecasts", "rejects") for date in DATES}
    scores = _scores(out, DATES[1])
    assert main(run_command(_settings(runs["inputs"][1], out, DATES[1]))) == 0

    again = _partition(out, "forecasts", DATES[1])
    # "gone" is not in the second input, "nanny" is rejected there
    assert len(again) == len(before["forecasts", DATES[1]]) == 10 * HORIZON
    assert not again.duplicated(["unique_id", "ds"]).any()
    assert _partition(out, "rejects", DATES[1]).unique_id.tolist() == ["nanny"]
    for date in (DATES[0], DATES[2]):  # the other dates' partitions untouched
        for table in ("forecasts", "rejects"):
            pd.testing.assert_frame_equal(_partition(out, table, date), before[table, date])
    whole = pq.read_table(out / "forecasts").num_rows  # all dates: one partition each, none doubled
    assert whole == sum(len(before["forecasts", date]) for date in DATES)

    after = _scores(out, DATES[1])
    assert len(after) == len(scores)
    assert not after.duplicated(["unique_id", "origin_date", "model"]).any()
    files = list((out / "scores" / f"forecast_date={DATES[1]}").glob("*.parquet"))
    assert pq.read_table(files).num_rows == len(scores)


def test_later_dates_forecast_with_the_first_dates_model_as_it_is(runs):
    """train.warm_epochs=0 with train.warm_start=latest: the model of the newest earlier date, no training;
    the first date, with no earlier model, trains from scratch for train.max_epochs."""
    first, *later = runs["manifests"]
    assert first["metrics"]["epochs"] == 1 and first["counts"]["trained_on"] == 12
    assert first["metrics"]["warm_started"] is False and "reused_checkpoint" not in first["metrics"]
    for manifest in later:
        assert manifest["checkpoint_uri"] == first["checkpoint_uri"]
        assert manifest["metrics"]["epochs"] == 0 and manifest["metrics"]["warm_started"] is True
        assert manifest["metrics"]["reused_checkpoint"] == first["checkpoint_uri"]
        assert manifest["counts"]["trained_on"] == 0 and manifest["placement"]["train"] == []
    assert [p.name for p in (runs["out"] / "checkpoints").iterdir()] == [f"forecaster-{DATES[0]}"]
    forecasts = pq.read_table(runs["out"] / "forecasts" / f"forecast_date={DATES[2]}").to_pandas()
    assert len(forecasts) == 10 * HORIZON and np.isfinite(forecasts.LSTM).all()
    # model.statistical=auto: the partner the reused model's training chose, from its checkpoint
    choice = first["metrics"]["statistical"]
    assert all(manifest["metrics"]["statistical"] == choice for manifest in later)
    assert set(forecasts.model) == {f"LSTM+{partner_name(choice['chosen'])}"}


def test_a_reused_checkpoint_whose_intervals_this_version_cannot_draw_is_refused_by_name(runs, tmp_path):
    """train.warm_epochs=0 with a checkpoint whose calibration names an interval unit this version does not
    know (one from a newer version): a ConfigError naming train.warm_start and the unit, on the driver,
    before any predictor starts."""
    import shutil

    import torch

    from forecaster.config import ConfigError

    copy = tmp_path / "newer"
    shutil.copytree(runs["manifests"][0]["checkpoint_uri"], copy)
    saved = torch.load(copy / "model.pt", weights_only=True)
    saved["calibration"]["unit"] = "iqr"
    torch.save(saved, copy / "model.pt")
    cfg = load_config(None, [*_settings(runs["inputs"][2], tmp_path / "out", "2026-01-04"),
                             f"train.warm_start={copy}"])
    with pytest.raises(ConfigError, match=f"train.warm_start={copy}: .*unit 'iqr'.*train.warm_epochs above 0"):
        run(cfg)
    assert not (tmp_path / "out" / "forecasts").exists()


def test_a_reused_checkpoint_without_auto_s_record_forecasts_with_the_partner_it_was_validated_with(runs, tmp_path):
    """train.warm_epochs=0 with model.statistical=auto and a checkpoint that records no choice (trained
    before auto): the forecasts and the manifest use theta_damped, auto's first candidate when such a
    model was validated and its intervals calibrated, not today's first candidate; and the seasonality
    test the model was trained with (0.5), not the config's (0.9)."""
    import shutil

    import torch

    copy = tmp_path / "before-auto"
    shutil.copytree(runs["manifests"][0]["checkpoint_uri"], copy)
    saved = torch.load(copy / "model.pt", weights_only=True)
    del saved["statistical"]
    torch.save(saved, copy / "model.pt")
    out = tmp_path / "out"
    manifest = run(load_config(None, [*_settings(runs["inputs"][2], out, "2026-01-04"), f"train.warm_start={copy}",
                                      "model.seasonality_level=0.9"]))
    assert manifest["metrics"]["statistical"] == {"configured": "auto", "chosen": "theta_damped"}
    assert manifest["metrics"]["seasonality_level"] == 0.5
    assert ("statistical partner: Theta+DampedTrend (model.statistical=auto; the reused model's training recorded "
            "no choice: the partner it was validated with)") in summary_lines(manifest)
    forecasts = pq.read_table(out / "forecasts" / "forecast_date=2026-01-04").to_pandas()
    assert set(forecasts.model) == {"LSTM+Theta+DampedTrend"}


def test_score_enabled_false_scores_nothing(tmp_path):
    cfg = _config(tmp_path, tmp_path / "out", "2026-01-04")
    cfg.score.enabled = False
    assert score_earlier(cfg, resolve(cfg.output.uri), validated=None) == (None, None)  # reads nothing
