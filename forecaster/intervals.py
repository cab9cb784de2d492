"""Prediction intervals of `forecast`, calibrated on the validation window (split conformal).

Training holds out the last `horizon` points of every series. At each epoch the loop forecasts them
and collects, per horizon step k, the absolute errors of `forecast` in each series' unit: |y - f| / unit.
The errors of all series go into a histogram with log-spaced bins, summed over the ranks (exact to a
bin's width, 1.2 %, whatever the number of series); the checkpoint keeps, for each level L of
model.levels and each step k, the L % quantile q[L, k] of the best epoch's errors, and the rule of the
unit they were measured in. The predictor then writes

    forecast-lo-L = forecast - q[L, k] * unit      forecast-hi-L = forecast + q[L, k] * unit

The unit (model.interval_unit, units()):
- `spread`, the default: the series' MASE scale (the in-sample MAE of seasonal naive up to the cutoff)
  plus SPREAD_WEIGHT times the spread of its models' forecasts (the population standard deviation of
  the LSTM's, Theta's, DampedTrend's and SES's forecasts at each step, averaged over the steps).
  Where the models disagree the future is harder to call, and the interval widens with it: a
  normalised nonconformity score (Papadopoulos et al., "Normalized nonconformity measures for
  regression conformal prediction", 2008) that follows a window's difficulty where the MASE scale,
  fixed by the history, cannot.
- `mase`: the MASE scale alone (every checkpoint from before the rule was recorded).

Intervals are symmetric and assume the next `horizon` steps err like the held-out ones did in these
units (exchangeability across series, the split-conformal assumption); forecaster backtest and the
scores table report how often they covered.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from forecaster.config import INTERVAL_UNITS

# bins of scaled absolute errors: [0, 1e-3), then 1200 log-spaced bins up to 1e3, then [1e3, inf)
EDGES = np.concatenate([[0.0], np.logspace(-3, 3, 1201)])
BINS = len(EDGES)  # the last bin holds everything from EDGES[-1] on

UNITS = INTERVAL_UNITS  # model.interval_unit
LEGACY_UNIT = "mase"  # the unit of a calibration that names none (checkpoints from before the rule was kept)
# the spread's weight in the unit, chosen among 1, 2 and 4 on M1's training parts (docs/benchmarks.md)
SPREAD_WEIGHT = 1.0


def spread(members: Sequence[np.ndarray]) -> np.ndarray:
    """(series,) how far the models' forecasts (each (series, horizon); NaN where a model has none, e.g.
    the LSTM on a series too short for it) lie apart: the population standard deviation across them at
    each step (0 where one model forecast), averaged over the steps a model forecast; 0 for a series
    no model forecast."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps (or series) no model forecast: NaN, then 0
        return np.nan_to_num(np.nanmean(np.nanstd(np.stack(members), axis=0), axis=1), nan=0.0)


def units(scale: np.ndarray, members: Sequence[np.ndarray], rule: str) -> np.ndarray:
    """(series,) the unit of each series' errors and interval widths under `rule` (UNITS): its MASE
    `scale` (evaluate.mase_scale), plus SPREAD_WEIGHT x the spread() of the models' forecasts `members`
    (the LSTM's and every statistical method's, theta.statistical) for `spread`. NaN where the scale is
    not positive: a flat history, or one too short for a difference, scales no interval."""
    if rule not in UNITS:
        raise ValueError(f"interval unit {rule!r}: expected one of {', '.join(UNITS)}")
    scale = np.where(scale > 0, scale, np.nan)
    return scale if rule == "mase" else scale + SPREAD_WEIGHT * spread(members)


def error_histogram(actual: np.ndarray, forecast: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Counts (horizon, BINS) of |actual - forecast| / unit per step, over the series and steps where
    all three are finite."""
    errors = np.abs(actual - forecast) / unit[:, None]
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


def bounds(forecast: np.ndarray, unit: np.ndarray, quantile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (series, horizon), of one level's interval around `forecast`; NaN where the
    series has no unit."""
    width = quantile[None, :] * unit[:, None]
    return forecast - width, forecast + width


def record(quantiles: np.ndarray | None, levels: tuple[int, ...] | list[int], rule: str) -> dict | None:
    """The checkpoint's calibration (TrainingState.calibration): the quantiles() at `levels`, and the
    rule of the unit they are in; None without quantiles."""
    if quantiles is None:
        return None
    return {"levels": list(levels), "quantiles": quantiles.tolist(), "unit": rule}


def read(calibration: dict | None) -> tuple[dict[int, np.ndarray], str]:
    """A checkpoint's calibration as ({level: (horizon,) quantiles}, its unit's rule): a calibration that
    names no unit was measured in the MASE scale (LEGACY_UNIT); none at all gives no quantiles."""
    if calibration is None:
        return {}, LEGACY_UNIT
    quantiles = {level: np.asarray(q, dtype=float)
                 for level, q in zip(calibration["levels"], calibration["quantiles"], strict=True)}
    return quantiles, calibration.get("unit", LEGACY_UNIT)
