"""Accuracy on M1 (monthly, quarterly, yearly): the job's default config against baselines.

    .venv/bin/python bench/accuracy.py [--data ../shared/data/m1] [--only monthly] [--set key=value ...]

Trains on each train.parquet through the normal job (`forecaster run` contract), then scores
against test.parquet: MASE (seasonal lag from the frequency, scale from the training part) and
sMAPE, averaged over series. Rows: `forecast` (what the job recommends: by default the mean of the
LSTM and Theta; with --set model.fallback=validation, seasonal naive where that won the series'
validation window), `LSTM` (the network alone), `LSTM+Theta` (the mean, never the fallback: the
same as `forecast` under the defaults), `Theta` (the job's own Theta baseline), seasonal naive,
and, when statsforecast is installed (`pip install -e '.[bench]'`), AutoETS and AutoTheta.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import pandas as pd

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecaster.config import load_config, season_length  # noqa: E402
from forecaster.pipeline import run  # noqa: E402
from forecaster.predict import without_fallback  # noqa: E402

DATASETS = {"monthly": ("MS", 18), "quarterly": ("QS", 8), "yearly": ("YS", 6)}


def score(train: pd.DataFrame, test: pd.DataFrame, forecast: pd.DataFrame, freq: str, column: str) -> dict:
    season = season_length(freq)
    merged = test.merge(forecast[["unique_id", "ds", column]], on=["unique_id", "ds"], how="left")
    mases, smapes = [], []
    for uid, rows in merged.groupby("unique_id"):
        history = train_by_id[uid]
        lag = season if len(history) > season else 1
        scale = np.abs(history[lag:] - history[:-lag]).mean()
        actual, pred = rows.y.to_numpy(), rows[column].to_numpy()
        if scale > 0:
            mases.append(np.abs(actual - pred).mean() / scale)
        denominator = np.abs(actual) + np.abs(pred)
        ratio = np.where(denominator > 0, 2 * np.abs(actual - pred) / np.maximum(denominator, 1e-12), 0)
        smapes.append(100 * np.mean(ratio))
    return {"MASE": float(np.mean(mases)), "sMAPE": float(np.mean(smapes)), "series": len(smapes)}


def seasonal_naive(train: pd.DataFrame, test: pd.DataFrame, freq: str) -> pd.DataFrame:
    season = season_length(freq)
    rows = []
    for uid, future in test.groupby("unique_id"):
        history = train_by_id[uid]
        lag = season if len(history) >= season else 1
        last = history[-lag:]
        values = [last[i % lag] for i in range(len(future))]
        rows.append(pd.DataFrame({"unique_id": uid, "ds": future.ds.to_numpy(), "SeasonalNaive": values}))
    return pd.concat(rows)


train_by_id: dict = {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "m1"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "work" / "accuracy"))
    parser.add_argument("--only", nargs="*", default=list(DATASETS))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    table = []
    for name in args.only:
        freq, horizon = DATASETS[name]
        train_path = pathlib.Path(args.data) / name / "train.parquet"
        train = pd.read_parquet(train_path).sort_values(["unique_id", "ds"])
        test = pd.read_parquet(pathlib.Path(args.data) / name / "test.parquet")
        train_by_id.clear()
        train_by_id.update({uid: g.y.to_numpy() for uid, g in train.groupby("unique_id")})
        cutoff = (train.ds.max() + pd.tseries.frequencies.to_offset(freq)).date().isoformat()
        out = pathlib.Path(args.out) / name
        cfg = load_config(None, [f"data.uri={train_path}", f"data.freq={freq}", f"model.horizon={horizon}",
                                 f"output.uri={out}", f"run.date={cutoff}",
                                 f"run.name=bench-{name}-{int(time.time())}", *args.overrides])
        started = time.perf_counter()
        manifest = run(cfg)
        seconds = time.perf_counter() - started
        forecast = pd.read_parquet(out / "forecasts" / f"forecast_date={cfg.forecast_date}")
        # the combination without the validation fallback (model.fallback=none), from the same run
        forecast["LSTM+Theta"] = without_fallback(forecast["LSTM"].to_numpy(), forecast["Theta"].to_numpy(),
                                                  forecast["forecast"].to_numpy(), "theta")
        columns = ("forecast", "LSTM", "LSTM+Theta", "Theta")
        rows = {column: score(train, test, forecast, freq, column) for column in columns}
        rows["SeasonalNaive"] = score(train, test, seasonal_naive(train, test, freq), freq, "SeasonalNaive")
        rows.update(statistical(train, test, freq, horizon))
        table.append((name, rows, manifest["counts"], seconds, manifest["metrics"].get("epochs")))
    print()
    print(f"{'dataset':10} {'model':14} {'MASE':>7} {'sMAPE':>7}   series rejected epochs seconds")
    for name, rows, counts, seconds, epochs in table:
        for model, result in rows.items():
            extra = (f"   {counts['input']:6d} {counts['rejected']:8d} {epochs!s:>6} {seconds:7.1f}"
                     if model == "forecast" else "")
            print(f"{name:10} {model:14} {result['MASE']:7.3f} {result['sMAPE']:7.2f}{extra}")


def statistical(train: pd.DataFrame, test: pd.DataFrame, freq: str, horizon: int) -> dict:
    """AutoETS and AutoTheta from statsforecast, when installed (the `bench` extra)."""
    try:
        from statsforecast import StatsForecast
        from statsforecast.models import AutoETS, AutoTheta
    except ImportError:
        print("statsforecast not installed: skipping AutoETS/AutoTheta (pip install -e '.[bench]')")
        return {}
    season = season_length(freq)
    sf = StatsForecast(models=[AutoETS(season_length=season), AutoTheta(season_length=season)], freq=freq, n_jobs=1)
    predicted = sf.forecast(df=train[["unique_id", "ds", "y"]], h=horizon).reset_index()
    predicted["ds"] = pd.to_datetime(predicted["ds"])
    return {model: score(train, test, predicted, freq, model) for model in ("AutoETS", "AutoTheta")}


if __name__ == "__main__":
    main()
