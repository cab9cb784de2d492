"""The standard Theta method (Assimakopoulos & Nikolopoulos, 2000), vectorised over a block of series.

Theta is the statistical benchmark forecasting teams compare against (M3's winner; statsforecast's
`Theta`, R's `forecast::thetaf`). The job computes it for every series, next to naive and seasonal
naive, and by default combines it with the LSTM (`model.combine=theta`): an equal-weight average of
a global network and a local statistical model is a more accurate and far less risky forecast
than either alone (the M4 competition's lesson), and costs no training.

Per series, as in `forecast::thetaf` (Hyndman & Billah, 2003):
1. seasonality test: the autocorrelation at lag `season` is significant at 90 % (needs more than
   two seasons, a non-constant series and, for the multiplicative decomposition, positive values);
2. if seasonal: classical multiplicative decomposition (centred moving average of one season;
   seasonal indices = mean ratio to it per position in the season, normalised to mean 1), and the
   series is divided by its indices;
3. simple exponential smoothing of the (adjusted) series, alpha chosen from a grid by in-sample
   one-step squared error, plus half the slope of the series' least-squares line as drift:
   f(j) = level + b/2 * (j - 1 + (1 - (1 - alpha)^n) / alpha);
4. the forecast multiplied back by the seasonal indices.

All series of a block run at once on a right-aligned matrix (every series ends in the last column,
so one column index gives every series' position in the season). At most `MAX_HISTORY` last points
are used.
"""

from __future__ import annotations

import numpy as np

from forecaster.features import SeriesBlock, take_points

MAX_HISTORY = 1000
ALPHAS = np.linspace(0.05, 1.0, 20)
Z90 = 1.6448536269514722  # one-sided 95 % normal quantile: the test's 90 % two-sided bound


def theta(block: SeriesBlock, ends: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """(series, horizon) Theta forecasts from each series' points [0, ends[i])."""
    y, n = _right_aligned(block, ends)
    if y.shape[1] == 0:
        return np.full((len(ends), horizon), np.nan)
    width = y.shape[1]
    index = np.ones((len(n), max(season, 1)))
    if season > 1:
        seasonal = _is_seasonal(y, n, season)
        if seasonal.any():
            index[seasonal] = _seasonal_indices(y[seasonal], n[seasonal], season)
    columns = np.arange(width)
    adjusted = y / index[:, columns % index.shape[1]]
    level, alpha = _ses(adjusted, n)
    drift = _slope(adjusted, n) / 2
    steps = np.arange(horizon)[None, :]
    forecast = level[:, None] + drift[:, None] * (steps + ((1 - (1 - alpha) ** n) / alpha)[:, None])
    future = (width + steps) % index.shape[1]
    return forecast * np.take_along_axis(index, np.broadcast_to(future, forecast.shape), axis=1)


def _right_aligned(block: SeriesBlock, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(series, width) matrix of each series' last min(ends, MAX_HISTORY) points, NaN-padded on the
    left, and those counts."""
    ends = np.asarray(ends, dtype=np.int64)
    n = np.minimum(ends, MAX_HISTORY)
    width = int(n.max()) if len(n) else 0
    # positions ends - width .. ends - 1: those before 0 are masked, and a series longer than
    # MAX_HISTORY has width = MAX_HISTORY, so only its last MAX_HISTORY points are in the window
    values, observed = take_points(block, np.arange(len(ends)), ends - width, width, ends)
    return np.where(observed > 0, values, np.nan), n


def _is_seasonal(y: np.ndarray, n: np.ndarray, season: int) -> np.ndarray:
    """The seasonality test of thetaf: |acf(season)| / sqrt((1 + 2 sum acf(k<season)^2) / n) > z."""
    valid = ~np.isnan(y)
    mean = np.nanmean(y, axis=1, keepdims=True)
    d = np.where(valid, y - mean, 0.0)
    denominator = np.einsum("ij,ij->i", d, d)
    acf = np.stack([np.einsum("ij,ij->i", d[:, k:], d[:, :-k]) for k in range(1, season + 1)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        acf = acf / denominator[:, None]
        stat = np.sqrt((1 + 2 * (acf[:, :-1] ** 2).sum(axis=1)) / n)
        significant = np.abs(acf[:, -1]) / stat > Z90
    positive = np.where(valid, y, 1.0).min(axis=1) > 0
    return significant & (n > 2 * season) & (denominator > 0) & positive


def _seasonal_indices(y: np.ndarray, n: np.ndarray, season: int) -> np.ndarray:
    """(series, season) multiplicative indices by column % season, normalised to mean 1."""
    width = y.shape[1]
    half = season // 2
    filled = np.nan_to_num(y)
    total = np.concatenate([np.zeros((len(y), 1)), np.cumsum(filled, axis=1)], axis=1)
    centre = np.arange(half, width - half)
    if season % 2:  # a plain moving average of one season
        average = (total[:, centre + half + 1] - total[:, centre - half]) / season
    else:  # 2 x season: half weight on the two ends
        inner = total[:, centre + half] - total[:, centre - half + 1]
        average = (inner + 0.5 * (filled[:, centre - half] + filled[:, centre + half])) / season
    inside = centre[None, :] - half >= (width - n)[:, None]  # the whole average lies in the series
    ratio = np.where(inside, y[:, centre] / np.where(inside, average, 1.0), np.nan)
    # the mean ratio per position in the season, over the ratios that exist: sums and counts per
    # position as one product with a (centre, season) indicator matrix
    observed = ~np.isnan(ratio)
    indicator = (centre[:, None] % season == np.arange(season)[None, :]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        index = (np.where(observed, ratio, 0.0) @ indicator) / (observed @ indicator)
    return index / index.mean(axis=1, keepdims=True)


def _ses(y: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Final level and alpha of simple exponential smoothing (level starts at the first point), alpha
    from ALPHAS by the sum of squared one-step errors.

    The left padding is filled with each series' first point, so before a series starts its level
    stays at that point and its errors are 0: no mask inside the loop over time."""
    rows, width = y.shape
    first = width - n
    start = y[np.arange(rows), np.minimum(first, width - 1)][:, None]
    filled = np.where(np.arange(width)[None, :] < first[:, None], start, y).T.copy()  # time-major
    level = np.repeat(start, len(ALPHAS), axis=1)
    sse = np.zeros_like(level)
    error = np.empty_like(level)
    step = np.empty_like(level)
    for c in range(1, width):
        np.subtract(filled[c][:, None], level, out=error)
        np.multiply(ALPHAS, error, out=step)
        level += step
        error *= error
        sse += error
    best = np.argmin(sse, axis=1)
    return level[np.arange(rows), best], ALPHAS[best]


def _slope(y: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Least-squares slope of each series against time (0 for a single point)."""
    valid = ~np.isnan(y)
    t = np.broadcast_to(np.arange(y.shape[1], dtype=np.float64), y.shape)
    count = np.maximum(n, 1)
    t_mean = np.where(valid, t, 0).sum(axis=1) / count
    y_mean = np.where(valid, y, 0).sum(axis=1) / count
    dt = np.where(valid, t - t_mean[:, None], 0.0)
    dy = np.where(valid, y - y_mean[:, None], 0.0)
    var = (dt * dt).sum(axis=1)
    return np.where(var > 0, (dt * dy).sum(axis=1) / np.where(var > 0, var, 1.0), 0.0)


def combine_weights(method: str) -> tuple[float, ...]:
    """The LSTM's weights in `forecast` that model.combine=`method` chooses from: one (theta: the mean
    with Theta; none: the LSTM alone) or a grid (fitted: the weight with the lowest mean MASE on the
    validation window, chosen by training)."""
    if method == "fitted":
        return tuple(i / 10 for i in range(11))
    return (1.0,) if method == "none" else (0.5,)


def floor_series(block: SeriesBlock, ends: np.ndarray, nonnegative: str) -> np.ndarray | None:
    """The series whose forecasts from `ends` are floored at zero (`floored`): under
    model.nonnegative=auto those with no point below zero before their end; none: None."""
    return block.never_negative(ends) if nonnegative == "auto" else None


def floored(forecast: np.ndarray, never_negative: np.ndarray | None) -> np.ndarray:
    """`forecast` (series, horizon), or one value per row, floored at zero on the series (rows)
    `never_negative` marks (model.nonnegative=auto: the series with no point below zero; None: none)."""
    if never_negative is None:
        return forecast
    mask = never_negative.reshape(never_negative.shape + (1,) * (forecast.ndim - never_negative.ndim))
    return np.where(mask, np.maximum(forecast, 0.0), forecast)


def network_forecast(lstm: np.ndarray, statistical: np.ndarray | None, weight: float) -> np.ndarray:
    """The forecast made with the network: weight x the LSTM's + (1 - weight) x Theta's (weight 1: the
    LSTM alone; `statistical` may then be None)."""
    return lstm if weight == 1 else weight * lstm + (1 - weight) * statistical
