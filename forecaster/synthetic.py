"""Synthetic seasonal series (long format) for tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa


def seasonal_series(n_series: int, length: int | tuple[int, int], freq: str = "MS", season: int = 12,
                    start: str = "2015-01-01", seed: int = 0, noise: float = 0.1,
                    id_prefix: str = "s") -> pa.Table:
    """Level x (1 + trend + seasonal swing) + noise, per series random level, trend and phase.

    `length` is fixed or a (min, max) range; series end on different dates when lengths differ
    (they all start at `start`).
    """
    rng = np.random.default_rng(seed)
    if isinstance(length, tuple):
        lengths = rng.integers(length[0], length[1] + 1, size=n_series)
    else:
        lengths = np.full(n_series, length)
    dates = pd.date_range(start, periods=int(lengths.max()), freq=freq).to_numpy().astype("datetime64[us]")
    level = rng.uniform(10, 1000, n_series)
    trend = rng.uniform(-0.01, 0.02, n_series)
    amplitude = rng.uniform(0.1, 0.5, n_series)
    phase = rng.integers(0, season, n_series)
    total = int(lengths.sum())
    series = np.repeat(np.arange(n_series), lengths)
    t = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    shape = 1 + trend[series] * t + amplitude[series] * np.sin(2 * np.pi * (t + phase[series]) / season)
    y = level[series] * shape * (1 + noise * rng.standard_normal(total))
    width = len(str(n_series))
    ids = np.array([f"{id_prefix}{i:0{width}d}" for i in range(n_series)])
    return pa.table({"unique_id": ids[series], "ds": dates[t], "y": y})


def stored_run(uri: str, forecast_date: str = "2026-01-01", n_series: int = 50, n_rejects: int = 5,
               n_origins: int = 3, horizon: int = 6, history: int = 24, newer_keys: bool = True,
               levels: tuple[int, ...] = (80, 95), plotted: int = 6, seed: int = 0) -> None:
    """What a run of `forecast_date` stores under `uri`, made up without Ray: the forecasts and rejects
    partitions (Parquet files of at most 50 000 series) and the manifest, for tests and benchmarks of
    what reads them (the report). `newer_keys=False` leaves out what older runs did not record
    (metrics.history and .validation, scores, report_series); `plotted` series of each role (sample,
    worst) go into report_series."""
    import json
    import os

    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    width = len(str(n_series))
    ids = np.array([f"s{i:0{width}d}" for i in range(n_series)])
    cutoff = pd.Timestamp(forecast_date) - pd.offsets.MonthBegin(1)
    ds = pd.date_range(cutoff, periods=horizon + 1, freq="MS")[1:].to_numpy().astype("datetime64[us]")
    level = rng.uniform(10, 1000, n_series)
    for part, begin in enumerate(range(0, n_series, 50_000)):
        chunk = np.arange(begin, min(begin + 50_000, n_series))
        n = len(chunk)
        base = np.repeat(level[chunk], horizon) * (1 + 0.1 * np.sin(np.tile(np.arange(horizon), n)))
        columns = {"unique_id": np.repeat(ids[chunk], horizon), "ds": np.tile(ds, n), "LSTM": base * 1.02}
        for lvl in levels:
            columns[f"LSTM-lo-{lvl}"] = base * (1 - lvl / 400)
            columns[f"LSTM-hi-{lvl}"] = base * (1 + lvl / 400)
        columns.update(Naive=np.repeat(level[chunk], horizon), SeasonalNaive=base * 0.97, Theta=base * 1.01,
                       DampedTrend=base * 0.99, SES=base * 0.98,
                       forecast=base, model=np.full(n * horizon, "LSTM+Theta+DampedTrend"),
                       cutoff=np.full(n * horizon, cutoff.to_datetime64().astype("datetime64[us]")))
        os.makedirs(f"{uri}/forecasts/forecast_date={forecast_date}", exist_ok=True)
        pq.write_table(pa.table(columns), f"{uri}/forecasts/forecast_date={forecast_date}/part-{part}.parquet")
    reasons = np.array(["non_finite_y", "irregular_timestamps", "duplicate_ds", "too_short"])
    os.makedirs(f"{uri}/rejects/forecast_date={forecast_date}", exist_ok=True)
    reject_reasons = reasons[np.arange(n_rejects) % len(reasons)]
    pq.write_table(pa.table({"unique_id": pa.array([f"bad{i}" for i in range(n_rejects)], pa.string()),
                             "reason": pa.array(reject_reasons, pa.string()),
                             "detail": pa.array([f"detail of bad{i}" for i in range(n_rejects)], pa.string())}),
                   f"{uri}/rejects/forecast_date={forecast_date}/part-0.parquet")
    epochs = 12
    history_rows = [{"epoch": e, "train_loss": 1 / (e + 1) + 0.3, "val_loss": 1 / (e + 1) + 0.35 + 0.01 * max(0, e - 8)}
                    for e in range(epochs)]
    metrics = {"epochs": epochs, "best_epoch": 8, "best_val_loss": history_rows[8]["val_loss"],
               "last_val_loss": history_rows[-1]["val_loss"], "restarts": 0, "warm_started": False,
               "initial_val_loss": 2.0, "val_mase_lstm": 1.24, "val_mase_seasonal_naive": 1.59,
               "val_smape_lstm": 14.2, "val_smape_seasonal_naive": 17.3}
    manifest = {
        "config": {"data": {"uri": "examples/data/m1_monthly.parquet", "freq": "MS"},
                   "model": {"horizon": horizon, "hidden_size": 64, "num_layers": 2, "loss": "quantile",
                             "combine": "theta", "statistical": "theta_damped"},
                   "run": {"name": "forecaster", "date": forecast_date}, "output": {"uri": uri}},
        "versions": {"python": "3.11.2", "forecaster": "0.1.0", "torch": "2.13.0", "ray": "2.60.0"},
        "counts": {"input": n_series + n_rejects, "forecast": n_series, "rejected": n_rejects,
                   "reject_reasons": {str(r): int((reject_reasons == r).sum()) for r in set(reject_reasons)},
                   "trained_on": n_series, "by_model": {"LSTM+Theta+DampedTrend": n_series}},
        "metrics": metrics,
        "timings_s": {"ray_init": 4.1, "read_validate": 2.5, "split_rejects": 0.8, "train": 132.0,
                      "predict_write": 7.0, "total": 146.4},
        "checkpoint_uri": f"{uri}/checkpoints/forecaster-{forecast_date}/checkpoint_000011",
        "outputs": {"forecasts": f"{uri}/forecasts/forecast_date={forecast_date}",
                    "rejects": f"{uri}/rejects/forecast_date={forecast_date}",
                    "manifest": f"{uri}/manifests/forecast_date={forecast_date}.json"},
    }
    if newer_keys:
        metrics["history"] = history_rows
        metrics["validation"] = {m: {"mase": v, "smape": 10 * v} for m, v in (
            ("forecast", 1.10), ("LSTM", 1.24), ("Theta", 1.18), ("SeasonalNaive", 1.59), ("Naive", 1.71))}
        origins = pd.date_range(end=forecast_date, periods=n_origins + 1, freq="MS")[:-1][::-1]
        manifest["scores"] = {"origins": [
            {"origin_date": str(o.date()), "steps": min(i + 1, horizon),
             "series": {"scored": n_series, "absent": 0, "rejected": 0, "no_actuals": 0, "pending": 0},
             "nan_points": 0,
             "models": {m: {"mase": base + 0.1 * np.sin(i), "smape": 10 * base, "mae": 5.0, "points": n_series,
                            "series": n_series, **({"coverage-80": 0.78} if m == "forecast" else {})}
                        for m, base in (("forecast", 1.1), ("LSTM", 1.2), ("SeasonalNaive", 1.5), ("Naive", 1.7))}}
            for i, o in enumerate(origins)]}
        manifest["outputs"]["scores"] = f"{uri}/scores"
        past = pd.date_range(end=cutoff, periods=history, freq="MS")
        chosen = [("sample", i) for i in sorted(rng.choice(n_series, min(plotted, n_series), replace=False))]
        chosen += [("worst", i) for i in range(min(plotted, n_series))]
        manifest["report_series"] = [
            {"unique_id": str(ids[i]), "role": role, "ds": [d.isoformat() for d in past],
             "y": list(level[i] * (1 + 0.1 * np.sin(np.arange(history)))),
             "validation": {"forecast": 2.0 + i / 10, "SeasonalNaive": 0.9} if role == "worst" else None}
            for role, i in chosen]
    os.makedirs(f"{uri}/manifests", exist_ok=True)
    with open(f"{uri}/manifests/forecast_date={forecast_date}.json", "w") as fh:
        json.dump(manifest, fh, indent=2, sort_keys=True)  # as storage.write_json writes it
