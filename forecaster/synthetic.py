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
