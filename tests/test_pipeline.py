"""End to end through a real local Ray: read -> validate -> train (2 DDP workers) -> predict -> write."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import ray

from forecaster.pipeline import run
from forecaster.synthetic import seasonal_series
from forecaster.theta import CANDIDATES, STATISTICAL, partner_name
from tests.specs import job_config

pytestmark = pytest.mark.ray

HORIZON = 6


def _write_input(root):
    """A Hive dataset of 3 files; one series is split across two files; 3 bad series."""
    good = seasonal_series(36, (48, 72), freq="MS", seed=3, noise=0.05).to_pandas()
    bad = pd.DataFrame({
        "unique_id": ["nan_series"] * 40 + ["short"] * 5 + ["dup"] * 40,
        "ds": list(pd.date_range("2018-01-01", periods=40, freq="MS")) + list(pd.date_range("2020-01-01", periods=5,
              freq="MS")) + list(pd.date_range("2018-01-01", periods=39, freq="MS")) + [pd.Timestamp("2018-01-01")],
        "y": [1.0] * 10 + [np.nan] + [1.0] * 29 + [2.0, 3.0, 2.5, 3.5, 3.0] + [3.0] * 40,
    })
    frame = pd.concat([good, bad], ignore_index=True)
    ids = sorted(frame.unique_id.unique())
    parts = [frame[frame.unique_id.isin(ids[i::3])] for i in range(3)]
    split = parts[0].unique_id.iloc[0]  # move half of one series into another file
    moved = parts[0][(parts[0].unique_id == split) & (parts[0].ds >= parts[0].ds.median())]
    parts[0] = parts[0].drop(moved.index)
    parts[1] = pd.concat([parts[1], moved])
    for i, part in enumerate(parts):
        path = root / f"region=r{i}"
        path.mkdir(parents=True)
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), path / "part.parquet")
    return frame


def _config(data, out, date, **extra):
    return job_config(data, out, date, HORIZON, "model.hidden_size=32", "train.windows_per_series=64",
                      "train.batch_size=128", "train.seed=7", *(f"{k}={v}" for k, v in extra.items()))


def _read(out, table, date):
    return pq.read_table(out / table / f"forecast_date={date}").to_pandas()


@pytest.fixture(scope="module")
def first_run(ray_session, tmp_path_factory):
    data = tmp_path_factory.mktemp("input")
    out = tmp_path_factory.mktemp("output")
    frame = _write_input(data)
    manifest = run(_config(data, out, "2024-06-01", **{"train.max_epochs": 15, "train.patience": 4}))
    return data, out, frame, manifest


def test_partition_layout(first_run):
    _, out, _, manifest = first_run
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "forecasts", "manifests", "rejects", "reports",
                                                     "scores"]
    assert [p.name for p in (out / "forecasts").iterdir() if not p.name.startswith("_")] == ["forecast_date=2024-06-01"]
    assert list((out / "forecasts" / "forecast_date=2024-06-01").glob("*.parquet"))
    assert (out / "manifests" / "forecast_date=2024-06-01.json").exists()
    on_disk = json.loads((out / "manifests" / "forecast_date=2024-06-01.json").read_text())
    assert on_disk["counts"] == manifest["counts"]
    assert on_disk["checkpoint_uri"] and on_disk["versions"]["ray"]
    placement = on_disk["placement"]
    assert [len(attempt) for attempt in placement["train"]] == [2]  # one attempt, a node per rank
    assert placement["predict"] and set(placement["predict"]) <= {n["NodeID"] for n in ray.nodes()}
    assert (out / "reports" / "forecast_date=2024-06-01.html").stat().st_size > 10_000
    assert on_disk["metrics"]["validation"]["forecast"]["mase"] > 0 and on_disk["metrics"]["history"]
    # readers see forecast_date as a Hive partition column
    dataset = pads.dataset(out / "forecasts", partitioning="hive")
    assert "forecast_date" in dataset.schema.names


def test_every_series_is_forecast_or_rejected(first_run):
    _, out, frame, manifest = first_run
    forecasts = _read(out, "forecasts", "2024-06-01")
    rejects = _read(out, "rejects", "2024-06-01")
    inputs = set(frame.unique_id)
    assert set(forecasts.unique_id) | set(rejects.unique_id) == inputs
    assert not set(forecasts.unique_id) & set(rejects.unique_id)
    assert dict(zip(rejects.unique_id, rejects.reason, strict=True)) == {
        "nan_series": "non_finite_y", "dup": "duplicate_ds"}
    counts = manifest["counts"]
    assert (counts["input"], counts["forecast"], counts["rejected"], counts["trained_on"]) == (39, 37, 2, 36)
    assert counts["reject_reasons"] == {"non_finite_y": 1, "duplicate_ds": 1}
    # the 5-point series is too short for the LSTM: the partner model.statistical=auto chose forecasts it
    partner = partner_name(manifest["metrics"]["statistical"]["chosen"])
    assert counts["by_model"][partner] == 1 and sum(counts["by_model"].values()) == 37


def test_forecast_rows_dates_and_values(first_run):
    _, out, frame, manifest = first_run
    forecasts = _read(out, "forecasts", "2024-06-01")
    expected = {"unique_id", "ds", "LSTM", "cutoff", "forecast", "model", "SeasonalNaive", "Naive", "Theta",
                "DampedTrend", "SES"}
    assert expected <= set(forecasts)
    assert len(forecasts) == 37 * HORIZON
    assert np.isfinite(forecasts.forecast).all()
    long = forecasts[forecasts.unique_id != "short"]
    assert np.isfinite(long.LSTM).all() and forecasts[forecasts.unique_id == "short"].LSTM.isna().all()
    # model.combine=theta, model.statistical=auto: the defaults; training chose one partner for the run on
    # the validated series' last 3 horizons (3 each: every series trained on has at least 30 points)
    choice = manifest["metrics"]["statistical"]
    assert choice["configured"] == "auto" and choice["chosen"] in CANDIDATES
    assert choice["series"] == manifest["metrics"]["val_series"] >= 35 and choice["windows"] == 3
    assert choice["pairs"] == 3 * choice["series"]
    assert choice["chosen"] == min(choice["mase"], key=choice["mase"].get)
    first, second = STATISTICAL[choice["chosen"]]  # OptimizedTheta and DampedTrend, or Theta and SES
    partner = partner_name(choice["chosen"])
    combined = forecasts[forecasts.model == f"LSTM+{partner}"]
    assert len(combined) > 0 and set(forecasts.model) == {f"LSTM+{partner}", partner}
    np.testing.assert_allclose(combined.forecast, (combined.LSTM + (combined[first] + combined[second]) / 2) / 2)
    last = frame.groupby("unique_id").ds.max()
    for uid, rows in forecasts.groupby("unique_id"):
        expected = pd.date_range(last[uid], periods=HORIZON + 1, freq="MS")[1:]
        assert list(rows.sort_values("ds").ds) == list(expected), uid
        assert (rows.cutoff == last[uid]).all()


def test_a_short_series_draws_its_interval_from_its_length_groups_calibration(first_run):
    """End to end: training keeps the short series' calibration in the checkpoint, and the 5-point series
    (too short for the network; horizon 6: group [4, 6)) is drawn from that group's quantiles, in its own
    unit (its MASE scale plus the spread of the three statistical forecasts), not the validated series'."""
    from forecaster import checkpoint, intervals
    from forecaster.evaluate import mase_scale
    from forecaster.features import SeriesBlock

    _, out, frame, manifest = first_run
    calibration = intervals.read(checkpoint.load_best(manifest["checkpoint_uri"]).calibration)
    assert calibration.edges.tolist() == [2, 3, 4, 6, 8] and calibration.short[2] is not None
    rows = _read(out, "forecasts", "2024-06-01").query("unique_id == 'short'").sort_values("ds")
    values = frame[frame.unique_id == "short"].sort_values("ds").y.to_numpy()
    scale = mase_scale(SeriesBlock([values]), np.array([5]), 12)[0]
    unit = scale + intervals.SPREAD_WEIGHT * rows[["Theta", "DampedTrend", "SES"]].std(axis=1, ddof=0).mean()
    for level in (80, 95):
        np.testing.assert_allclose(rows[f"forecast-hi-{level}"] - rows.forecast, calibration.short[2][level] * unit)
    assert not np.allclose(calibration.short[2][80], calibration.quantiles[80])


def test_series_all_too_short_get_the_partner_auto_means_without_a_model(ray_session, tmp_path):
    """No series long enough for the network: no training, no checkpoint; model.statistical=auto has
    nothing to choose on, so every series gets otm_damped's partner, and the manifest and the console
    say so."""
    from forecaster.manifest import summary_lines

    frame = pd.DataFrame({"unique_id": np.repeat(["a", "b"], 6), "ds": list(pd.date_range("2020-01-01", periods=6,
                                                                                        freq="MS")) * 2,
                          "y": np.r_[np.arange(6.0) + 10, np.arange(6.0) * 2 + 5]})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "short.parquet")
    manifest = run(_config(tmp_path / "short.parquet", tmp_path / "out", "2024-06-01"))
    assert manifest["checkpoint_uri"] is None and manifest["counts"]["trained_on"] == 0
    assert manifest["metrics"]["statistical"] == {"configured": "auto", "chosen": "otm_damped"}
    forecasts = _read(tmp_path / "out", "forecasts", "2024-06-01")
    assert set(forecasts.model) == {"OptimizedTheta+DampedTrend"} and forecasts.LSTM.isna().all()
    np.testing.assert_allclose(forecasts.forecast, (forecasts.OptimizedTheta + forecasts.DampedTrend) / 2)
    assert ("statistical partner: OptimizedTheta+DampedTrend (model.statistical=auto; no series long enough to train "
            "on, so no choice: the first candidate)") in summary_lines(manifest)


def test_split_series_was_merged(first_run):
    _, out, frame, _ = first_run
    forecasts = _read(out, "forecasts", "2024-06-01")
    assert forecasts.groupby("unique_id").size().eq(HORIZON).all()


def test_model_beats_seasonal_naive_on_validation(first_run):
    metrics = first_run[3]["metrics"]
    assert metrics["val_mase_lstm"] < metrics["val_mase_seasonal_naive"], metrics
    assert metrics["epochs"] >= 2
