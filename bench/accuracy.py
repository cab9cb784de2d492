"""Accuracy on M1 (monthly, quarterly, yearly): the LSTM with default config vs seasonal naive.

    .venv/bin/python bench/accuracy.py [--data ../shared/data/m1] [--set key=value ...]

Trains on each train.parquet through the normal job (`forecaster run` contract), then scores the
forecasts against test.parquet: MASE (seasonal lag from the frequency, scale from the training
part) and sMAPE, averaged over series. Prints one table.
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
        smapes.append(100 * np.mean(np.where(denominator > 0, 2 * np.abs(actual - pred) / np.maximum(denominator, 1e-12), 0)))
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
        lstm = score(train, test, forecast, freq, "LSTM")
        naive = score(train, test, seasonal_naive(train, test, freq), freq, "SeasonalNaive")
        table.append((name, lstm, naive, manifest["counts"], seconds, manifest["metrics"].get("epochs")))
    print()
    print(f"{'dataset':10} {'series':>6} {'rej':>4} {'LSTM MASE':>10} {'SNaive MASE':>12} "
          f"{'LSTM sMAPE':>11} {'SNaive sMAPE':>13} {'epochs':>6} {'seconds':>8}")
    for name, lstm, naive, counts, seconds, epochs in table:
        print(f"{name:10} {counts['input']:6d} {counts['rejected']:4d} {lstm['MASE']:10.3f} {naive['MASE']:12.3f} "
              f"{lstm['sMAPE']:11.2f} {naive['sMAPE']:13.2f} {epochs:6} {seconds:8.1f}")


if __name__ == "__main__":
    main()
