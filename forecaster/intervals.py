"""Prediction intervals of `forecast`, calibrated on the validation window (split conformal).

Training holds out the last `horizon` points of every series. At each epoch the loop forecasts them
and collects, per horizon step k, the absolute errors of `forecast` scaled by each series' MASE scale
(the in-sample MAE of seasonal naive up to the cutoff): |y - f| / scale. The errors of all series go
into a histogram with log-spaced bins, summed over the ranks (exact to a bin's width, 1.2 %, whatever
the number of series); the checkpoint keeps, for each level L of model.levels and each step k, the
L % quantile q[L, k] of the best epoch's errors. The predictor then writes

    forecast-lo-L = forecast - q[L, k] * scale      forecast-hi-L = forecast + q[L, k] * scale

with `scale` the series' MASE scale over its whole history: intervals that widen with the step as the
validation errors did, and with each series' own volatility. They are symmetric and assume the next
`horizon` steps err like the held-out ones did (exchangeability across series, the split-conformal
assumption); forecaster backtest and the scores table report how often they covered.
"""

from __future__ import annotations

import numpy as np

from forecaster.evaluate import mase_scale
from forecaster.features import SeriesBlock

# bins of scaled absolute errors: [0, 1e-3), then 1200 log-spaced bins up to 1e3, then [1e3, inf)
EDGES = np.concatenate([[0.0], np.logspace(-3, 3, 1201)])
BINS = len(EDGES)  # the last bin holds everything from EDGES[-1] on


def scales(block: SeriesBlock, ends: np.ndarray, season: int) -> np.ndarray:
    """The unit of each series' errors: its MASE scale over [0, ends); NaN where the history is flat
    or too short for one difference (no interval can be scaled from it)."""
    scale = mase_scale(block, ends, season)
    return np.where(scale > 0, scale, np.nan)


def error_histogram(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Counts (horizon, BINS) of |actual - forecast| / scale per step, over the series and steps where
    all three are finite."""
    errors = np.abs(actual - forecast) / scale[:, None]
    horizon = actual.shape[1]
    counts = np.zeros((horizon, BINS))
    for step in range(horizon):
        column = errors[:, step]
        column = column[np.isfinite(column)]
        counts[step] = np.bincount(np.searchsorted(EDGES, column, side="right") - 1, minlength=BINS)
    return counts


def quantiles(counts: np.ndarray, levels: tuple[int, ...] | list[int]) -> np.ndarray | None:
    """(levels, horizon) conformal quantiles from a summed `error_histogram`: for n errors, the upper
    edge of the bin holding the ceil((n + 1) L / 100)-th smallest (the split-conformal rank), so that
    a new error falls below it with probability at least L %. None without errors to calibrate on."""
    n = counts.sum(axis=1)
    if not len(levels) or (n <= 0).any():
        return None
    cumulative = np.cumsum(counts, axis=1)
    upper = np.append(EDGES[1:], np.inf)  # upper edge of each bin
    out = np.empty((len(levels), counts.shape[0]))
    for i, level in enumerate(levels):
        rank = np.minimum(np.ceil((n + 1) * level / 100.0), n)
        index = np.array([np.searchsorted(cumulative[k], rank[k]) for k in range(len(n))])
        out[i] = upper[index]
    return out


def bounds(forecast: np.ndarray, scale: np.ndarray, quantile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (series, horizon), of one level's interval around `forecast`; NaN where the
    series has no scale."""
    width = quantile[None, :] * scale[:, None]
    return forecast - width, forecast + width
