"""Covariates end to end through a real local Ray: past, known-future (data.future_uri) and static
(input and data.static_uri) covariates reach training and prediction; what is missing is rejected."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from forecaster.config import load_config
from forecaster.pipeline import run
from tests.specs import job_config

pytestmark = pytest.mark.ray

HORIZON = 4
DATE = "2021-01-01"


def _write(tmp_path):
    rng = np.random.default_rng(0)
    frames, future, static = [], [], []
    for i in range(16):
        sid = f"s{i:02d}"
        ds = pd.date_range("2016-01-01", periods=60, freq="MS")  # ends 2020-12
        promo = rng.integers(0, 2, 60 + HORIZON).astype(float)
        y = 100 + 10 * np.sin(2 * np.pi * np.arange(60) / 12) + 30 * promo[:60] + rng.normal(0, 1, 60)
        frames.append(pd.DataFrame({"unique_id": sid, "ds": ds, "y": y, "promo": promo[:60],
                                    "temp": rng.normal(0, 1, 60), "size": float(i + 1)}))
        steps = HORIZON - 1 if sid == "s01" else HORIZON  # s01 lacks its last future step
        future.append(pd.DataFrame({"unique_id": sid, "ds": pd.date_range("2021-01-01", periods=steps, freq="MS"),
                                    "promo": promo[60:60 + steps]}))
        if sid != "s02":  # s02 has no static row
            static.append({"unique_id": sid, "store": f"store-{i % 3}"})
    for name, frame in (("input", pd.concat(frames)), ("future", pd.concat(future)), ("static", pd.DataFrame(static))):
        (tmp_path / name).mkdir()
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / name / "part.parquet")


def test_covariates_end_to_end(ray_session, tmp_path):
    _write(tmp_path)
    out = tmp_path / "out"
    cfg = job_config(tmp_path / "input", out, DATE, HORIZON, "data.past_covariates=[temp]",
                     "data.future_covariates=[promo]", f"data.future_uri={tmp_path / 'future'}",
                     "data.static_covariates=[store]", f"data.static_uri={tmp_path / 'static'}", "model.hidden_size=8",
                     "train.max_epochs=2", "train.refit_epochs=0", "train.windows_per_series=8",
                     "model.ensemble_size=2", "report.enabled=false",
                     "train.num_workers=1")
    manifest = run(cfg)

    rejects = pq.read_table(out / "rejects" / f"forecast_date={DATE}").to_pandas().set_index("unique_id")
    assert rejects.reason.to_dict() == {"s01": "missing_future_covariates", "s02": "missing_static"}
    forecasts = pq.read_table(out / "forecasts" / f"forecast_date={DATE}").to_pandas()
    assert sorted(forecasts.unique_id.unique()) == [f"s{i:02d}" for i in range(16) if i not in (1, 2)]
    assert len(forecasts) == 14 * HORIZON and np.isfinite(forecasts.LSTM).all()
    assert manifest["counts"]["rejected"] == 2 and manifest["counts"]["forecast"] == 14

    checkpoint = manifest["checkpoint_uri"]
    with open(f"{checkpoint}/config.json") as fh:
        model = json.load(fh)["model"]
    assert model["ensemble_size"] == 2
    assert model["features"]["past"] == ["temp"] and model["features"]["future"] == ["promo"]
    assert model["features"]["static_categorical"] == ["store"] and model["features"]["calendar"] == "month"


def test_static_covariates_from_the_input(ray_session, tmp_path):
    _write(tmp_path)
    out = tmp_path / "out"
    cfg = load_config(None, [
        f"data.uri={tmp_path / 'input'}", "data.freq=MS", f"model.horizon={HORIZON}", f"output.uri={out}",
        f"run.date={DATE}", "data.static_covariates=[size]", "model.hidden_size=8", "train.max_epochs=1",
        "train.refit_epochs=0", "train.windows_per_series=4", "train.num_workers=1", "report.enabled=false",
    ])
    manifest = run(cfg)
    assert manifest["counts"]["forecast"] == 16 and manifest["counts"]["rejected"] == 0
    with open(f"{manifest['checkpoint_uri']}/config.json") as fh:
        assert json.load(fh)["model"]["features"]["static_numeric"] == ["size"]
