"""Metrics and baselines (numpy only). Shapes: (series, horizon) unless said otherwise."""

from __future__ import annotations

import numpy as np

from forecaster.features import SeriesBlock


def seasonal_naive(block: SeriesBlock, ends: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """Repeat the last season before each series' end `ends[i]`; naive where a season is not there."""
    lag = np.where(ends >= season, season, 1)
    steps = np.arange(horizon)[None, :]
    back = lag[:, None] - (steps % lag[:, None])  # 1..lag points before the end
    index = block.starts[:, None] + ends[:, None] - back
    return block.values[index]


def mase_scale(block: SeriesBlock, ends: np.ndarray, season: int) -> np.ndarray:
    """Mean absolute seasonal difference of each series over its points [0, ends[i]).

    Lag 1 where a series has no more than `season` points; a series whose history gives no
    difference or only zero differences gets scale 0, which makes its MASE undefined (NaN).
    """
    n = len(block)
    lag = np.where(ends > season, season, 1)
    series_of_point, position = block.points()
    point_lag = lag[series_of_point]
    usable = (position >= point_lag) & (position < ends[series_of_point])
    index = np.flatnonzero(usable)
    diffs = np.abs(block.values[index] - block.values[index - point_lag[index]])
    total = np.bincount(series_of_point[index], weights=diffs, minlength=n)
    count = np.bincount(series_of_point[index], minlength=n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def holdout_actual(block: SeriesBlock, horizon: int) -> np.ndarray:
    """(series, horizon): the last `horizon` points of each series, the validation window."""
    cutoffs = block.lengths - horizon
    return block.values[block.starts[:, None] + cutoffs[:, None] + np.arange(horizon)[None, :]]


def validation_scores(block: SeriesBlock, forecasts: dict[str, np.ndarray], horizon: int, season: int,
                      scale: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-series MASE and sMAPE on the last `horizon` points of each series: of `forecasts` (name ->
    (series, horizon)) and of the naive and seasonal-naive baselines; keys `mase_<name>`, `smape_<name>`.
    `scale`: mase_scale up to the cutoffs, if the caller has it already."""
    cutoffs = block.lengths - horizon
    actual = holdout_actual(block, horizon)
    scale = mase_scale(block, cutoffs, season) if scale is None else scale
    return named_scores(actual, {**forecasts, "seasonal_naive": seasonal_naive(block, cutoffs, horizon, season),
                                 "naive": seasonal_naive(block, cutoffs, horizon, 1)}, scale)


def named_scores(actual: np.ndarray, forecasts: dict[str, np.ndarray], scale: np.ndarray) -> dict[str, np.ndarray]:
    """Per-series `mase_<name>` and `smape_<name>` of each of `forecasts` (name -> (series, horizon))."""
    scores = {}
    for name, forecast in forecasts.items():
        scores[f"mase_{name}"] = mase(actual, forecast, scale)
        scores[f"smape_{name}"] = smape(actual, forecast)
    return scores


def mase(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, np.abs(actual - forecast).mean(axis=1) / scale, np.nan)


def smape_terms(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """2 |actual - forecast| / (|actual| + |forecast|) per point, 0 where both are 0."""
    denominator = np.abs(actual) + np.abs(forecast)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, 2 * np.abs(actual - forecast) / denominator, 0.0)


def smape(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    """Symmetric MAPE in percent, 0..200 (M4 definition); 0/0 steps count as 0."""
    return 100 * smape_terms(actual, forecast).mean(axis=1)


def mae(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    return np.abs(actual - forecast).mean(axis=1)


def rmse(actual: np.ndarray, forecast: np.ndarray) -> np.ndarray:
    return np.sqrt(((actual - forecast) ** 2).mean(axis=1))


def pinball(actual: np.ndarray, forecast: np.ndarray, quantiles: list[float]) -> np.ndarray:
    """Mean pinball (quantile) loss over steps and quantiles; `forecast` is (series, horizon, quantiles).
    A point forecast scored at quantile 0.5 gets MAE / 2."""
    q = np.asarray(quantiles, dtype=np.float64)
    error = actual[..., None] - forecast
    return np.maximum(q * error, (q - 1) * error).mean(axis=(1, 2))


def coverage(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Share of steps with lo <= actual <= hi (NaN where the interval is missing)."""
    inside = ((actual >= lo) & (actual <= hi)).mean(axis=1)
    return np.where(np.isfinite(lo).all(axis=1) & np.isfinite(hi).all(axis=1), inside, np.nan)


def scaled_width(lo: np.ndarray, hi: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Mean width of an interval over the steps, in units of the series' MASE scale (NaN where either
    is missing): comparable across series, like MASE."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, (hi - lo).mean(axis=1) / scale, np.nan)


def interval_score(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: float, scale: np.ndarray) -> np.ndarray:
    """Per series: the mean over the steps of the interval score of a `level` % interval (Gneiting and Raftery
    2007; width + 2/alpha x how far the actual fell outside, alpha = 1 - level/100), in units of the
    series' MASE scale: M4's MSIS. Lower is better; it rewards narrow intervals and punishes misses, so
    widening an interval to cover more only pays where it was missing. NaN where the interval or the
    scale is missing."""
    alpha = 1.0 - level / 100.0
    score = (hi - lo) + 2.0 / alpha * (np.maximum(lo - actual, 0.0) + np.maximum(actual - hi, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scale > 0, score.mean(axis=1) / scale, np.nan)


def forecast_scores(actual: np.ndarray, forecast: np.ndarray, scale: np.ndarray,
                    quantiles: list[float] = (0.5,)) -> dict[str, np.ndarray]:
    """Per-series MASE, sMAPE, MAE, RMSE and pinball of one model against `actual` (series, horizon).

    `forecast` is (series, horizon) or (series, horizon, quantiles) with the point forecast first;
    `scale` is `mase_scale` of each series' in-sample part. A series whose point forecast is missing
    (NaN: too short for the model) gets NaN everywhere, never a score of 0.
    """
    full = forecast if forecast.ndim == 3 else forecast[..., None]
    point = full[..., 0]
    scores = {"mase": mase(actual, point, scale), "smape": smape(actual, point), "mae": mae(actual, point),
              "rmse": rmse(actual, point), "pinball": pinball(actual, full, list(quantiles))}
    defined = np.isfinite(point).all(axis=1)
    return {name: np.where(defined, value, np.nan) for name, value in scores.items()}
