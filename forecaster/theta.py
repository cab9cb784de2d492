"""The statistical forecasts, vectorised over a block of series: the standard and the optimised Theta
method, damped-trend and simple exponential smoothing, and the partner they make for the LSTM.

Theta is the statistical benchmark forecasting teams compare against (M3's winner; statsforecast's
`Theta`, R's `forecast::thetaf`); damped-trend exponential smoothing (Gardner & McKenzie, 1985) is a
member of the M4 competition's "Comb" benchmark (with SES and Holt) and a strong method on trending
quarterly and yearly data; the optimised Theta method (Fiorucci et al., "Models for optimising the
theta method and their relationship to state space models", 2016; statsforecast's `OptimizedTheta`)
fits the drift's weight that the standard method fixes at a half. The job computes them and SES for
every series, next to naive and seasonal naive, and combines the LSTM with the optimised Theta's mean
with the damped trend, or Theta's with SES (`model.combine=theta`, `model.statistical`): an
equal-weight average of a global network and local statistical models is a
more accurate and far less risky forecast than any alone (the M4 competition's lesson), and costs no
training. Simple exponential smoothing (SES) is Theta without its drift: the partner for series
whose trends do not carry over. `model.statistical=auto`, the default, lets each run choose between
the two partners on its own data (`partner_errors`, below).

Per series, as in `forecast::thetaf` (Hyndman & Billah, 2003), but for the seasonality test's level:
1. seasonality test: the autocorrelation at lag `season` is significant at model.seasonality_level,
   50 % by default (thetaf's is 90 %; SEASONALITY_LEVEL says why), and the series has more than two
   seasons and is not constant;
2. if seasonal: classical multiplicative decomposition (centred moving average of one season;
   seasonal indices = mean ratio to it per position in the season, normalised to mean 1), and the
   series is divided by its indices; a series with a zero or negative value, which has no ratios,
   gets the additive decomposition instead (the mean difference to the moving average, normalised to
   mean 0, subtracted), as statsforecast's AutoTheta does: without it such a series (demand with
   zeros) kept its whole season in the methods' errors;
3. Theta: simple exponential smoothing of the (adjusted) series, alpha chosen from a grid by in-sample
   one-step squared error, plus half the slope of the series' least-squares line as drift:
   f(j) = level + b/2 * (j - 1 + (1 - (1 - alpha)^n) / alpha);
   damped trend: Holt's linear method with a damped trend on the same adjusted series (level and
   trend start at the first point and 0), (alpha, beta, phi) from a grid by in-sample one-step
   squared error: f(j) = level + (phi + ... + phi^j) * trend;
   SES: Theta's level alone, f(j) = level;
   optimised Theta: Theta's forecast with the drift's weight 1 - 1/theta instead of 1/2, (alpha,
   theta) from a grid by in-sample one-step squared error, the one-step forecast after k points being
   level + (1 - 1/theta) * b * (1 - (1 - alpha)^k) / alpha (the level starts at the first point);
4. the forecast multiplied back by the seasonal indices (or the additive components added back).

`model.statistical=auto` picks, once per run and for all series, the partner (the optimised Theta with
DampedTrend, or Theta with SES) with the lower mean MASE on each series' last `CHOICE_WINDOWS` horizons, each
partner refitted on the points before each of them (a rolling origin, as statsforecast's
`cross_validation`), over the series validation takes (forecaster.train makes the choice in its
first validation pass, summed over all ranks, and keeps it in the checkpoint): one choice from many
series and windows, so it does not chase noise as a choice per series does; the series' trends
either carried over in the recent past or they did not.

All series of a block run at once on a right-aligned matrix (every series ends in the last column,
so one column index gives every series' position in the season). At most `MAX_HISTORY` last points
are used.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from forecaster.columns import DAMPED, OPTIMIZED_THETA, SES, STATISTICAL_METHODS, THETA
from forecaster.evaluate import mase, mase_scale
from forecaster.features import SeriesBlock, take_points

MAX_HISTORY = 1000
ALPHAS = np.linspace(0.05, 1.0, 20)
# damped trend: (alpha, beta, phi) on a grid; beta is the trend's smoothing relative to alpha's
DAMPED_ALPHAS, DAMPED_BETAS, DAMPED_PHIS = (g.ravel() for g in np.meshgrid(
    np.linspace(0.05, 1.0, 10), np.array([0.01, 0.05, 0.1, 0.3]), np.array([0.8, 0.9, 0.95, 0.98]), indexing="ij"))
DAMPED_ROWS = 512  # series per pass of the damped trend's loop: its (series, grid) state then stays in cache
# the optimised Theta method: theta on a grid (the drift's weight 1 - 1/theta: 1 is SES, 2 Theta), with ALPHAS
OPTIMIZED_THETAS = np.array([1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0])
# model.statistical: each partner's members (a Theta first); `auto` is resolved per run to one of CANDIDATES
STATISTICAL = {"theta": (THETA,), "theta_damped": (THETA, DAMPED), "theta_ses": (THETA, SES),
               "otm_damped": (OPTIMIZED_THETA, DAMPED)}
AUTO = "auto"
CANDIDATES = ("otm_damped", "theta_ses")  # what auto chooses between (the first on a tie)
# auto's partner for a checkpoint that records no choice (trained before auto, or with a configured partner):
# auto's first candidate until the optimised Theta came, so that it forecasts as it was validated
UNRECORDED = "theta_damped"
CHOICE_WINDOWS = 3  # the last horizons of each series that auto scores the candidates on
# The seasonality test's level (model.seasonality_level): a 50 % two-sided test, |acf(season)| over its
# standard error above the normal's 75 % quantile. thetaf's 90 % test (1.645) misses the season of many
# short seasonal series: on M1's training parts, monthly and quarterly, the 50 % test made the partner
# 0.3-5 % and `forecast` 0.2-2.2 % better at each of the last three horizons (docs/benchmarks.md).
# Adjusting a series that has no season costs little (indices near 1, estimated from every season; up
# to 3 % of the partner's accuracy on synthetic series without one); missing one costs its pattern.
SEASONALITY_LEVEL = 0.5


def seasonality_z(level: float) -> float:
    """The bound on |acf(season)| over its standard error of a two-sided test at `level` (0.5: 0.674;
    thetaf's 0.9: 1.645; 0: any autocorrelation passes, 1: none)."""
    return NormalDist().inv_cdf((1 + level) / 2) if level < 1 else float("inf")


def theta(block: SeriesBlock, ends: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """(series, horizon) Theta forecasts from each series' points [0, ends[i])."""
    return statistical(block, ends, horizon, season, (THETA,))[THETA]


def damped_trend(block: SeriesBlock, ends: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """(series, horizon) damped-trend exponential smoothing forecasts from each series' points
    [0, ends[i]), on the series seasonally adjusted as for Theta."""
    return statistical(block, ends, horizon, season, (DAMPED,))[DAMPED]


def ses(block: SeriesBlock, ends: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """(series, horizon) simple exponential smoothing forecasts from each series' points [0, ends[i]),
    on the series seasonally adjusted as for Theta: Theta's level, without its drift."""
    return statistical(block, ends, horizon, season, (SES,))[SES]


def optimized_theta(block: SeriesBlock, ends: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """(series, horizon) optimised Theta forecasts from each series' points [0, ends[i]), on the series
    seasonally adjusted as for Theta: Theta with the drift's weight 1 - 1/theta fitted with alpha."""
    return statistical(block, ends, horizon, season, (OPTIMIZED_THETA,))[OPTIMIZED_THETA]


def statistical(block: SeriesBlock, ends: np.ndarray, horizon: int, season: int,
                names: tuple[str, ...] = STATISTICAL_METHODS,
                level: float = SEASONALITY_LEVEL) -> dict[str, np.ndarray]:
    """{column: (series, horizon) forecasts from each series' points [0, ends[i])} of the statistical
    methods `names` (by their output columns), with the seasonality test at `level`. They share the
    seasonal adjustment, and Theta, SES and the optimised Theta the smoothed levels: all four cost
    about what Theta and DampedTrend cost apart."""
    unknown = set(names) - set(STATISTICAL_METHODS)
    if unknown:
        raise ValueError(f"no statistical method {sorted(unknown)}: expected some of {', '.join(STATISTICAL_METHODS)}")
    adjusted, n, season_factors = _adjusted(block, ends, season, level)
    width = adjusted.shape[1]
    if width == 0:
        return {name: np.full((len(ends), horizon), np.nan) for name in names}
    out = {}
    if THETA in names or SES in names or OPTIMIZED_THETA in names:
        slope = _slope(adjusted, n)
        levels, sse, drift_sums = _smoothed(adjusted, n, drift=OPTIMIZED_THETA in names)
        best = np.argmin(sse, axis=1)
        level, alpha = levels[np.arange(len(n)), best], ALPHAS[best]
        if THETA in names:
            out[THETA] = _drifted(level, alpha, slope / 2, n, horizon)
        if SES in names:
            out[SES] = np.repeat(level[:, None], horizon, axis=1)
        if OPTIMIZED_THETA in names:
            out[OPTIMIZED_THETA] = _optimized(levels, sse, *drift_sums, slope, n, horizon)
    if DAMPED in names:
        passes = [_damped(adjusted[i:i + DAMPED_ROWS], n[i:i + DAMPED_ROWS]) for i in range(0, len(n), DAMPED_ROWS)]
        level, trend, phi = (np.concatenate(parts) for parts in zip(*passes, strict=True))
        damping = np.cumsum(phi[:, None] ** np.arange(1, horizon + 1)[None, :], axis=1)
        out[DAMPED] = level[:, None] + damping * trend[:, None]
    return {name: _reseasonalised(out[name], *season_factors, width) for name in names}


def _members(method: str) -> tuple[str, ...]:
    if method not in STATISTICAL:
        raise ValueError(f"model.statistical={method!r}: expected one of {', '.join(STATISTICAL)} (auto is resolved "
                         "per run, by training: theta.resolved)")
    return STATISTICAL[method]


def partner(forecasts: dict[str, np.ndarray], method: str) -> np.ndarray:
    """The LSTM's statistical partner in `forecast` (and the forecast of a series too short for the
    network): the mean of model.statistical=`method`'s members."""
    members = _members(method)
    return sum(forecasts[m] for m in members) / len(members)


def partner_name(method: str) -> str:
    """The `model` column's name of the partner: Theta, Theta+DampedTrend, Theta+SES."""
    return "+".join(_members(method))


def partner_errors(block: SeriesBlock, horizon: int, season: int, candidates: tuple[str, ...] = CANDIDATES,
                   windows: int = CHOICE_WINDOWS,
                   last: tuple[dict[str, np.ndarray], np.ndarray, np.ndarray] | None = None,
                   level: float = SEASONALITY_LEVEL) -> np.ndarray:
    """(candidates, 2): for each candidate partner (a model.statistical value), the sum of its MASE over
    the block's series and the last `windows` horizons of each, and how many (series, window) pairs it
    summed. Each window's partner is fitted on the points before it; a window counts where at least
    two points precede it and its MASE is defined (a scale from those points, no missing actual).
    `last`: (`statistical` forecasts with every candidate's members, actuals, MASE scales) of the last
    horizon, where the caller has them (validation does): that window is then not fitted again. `level`:
    the seasonality test's, as `statistical` takes it."""
    names = tuple(dict.fromkeys(m for c in candidates for m in _members(c)))
    sums = np.zeros((len(candidates), 2))
    rows = np.arange(len(block))
    for k in range(1, windows + 1):
        cutoffs = block.lengths - k * horizon
        counted = cutoffs >= 2
        if not counted.any():
            continue
        if k == 1 and last is not None:
            forecasts, actual, scale = last
        else:
            ends = np.maximum(cutoffs, 2)  # the series not counted still need a fit to run (masked below)
            forecasts = statistical(block, ends, horizon, season, names, level)
            actual, observed = take_points(block, rows, ends, horizon, block.lengths)
            actual = np.where(observed > 0, actual, np.nan)
            scale = mase_scale(block, ends, season)
        for i, candidate in enumerate(candidates):
            scores = mase(actual, partner(forecasts, candidate), scale)
            defined = counted & np.isfinite(scores)
            sums[i] += scores[defined].sum(), defined.sum()
    return sums


def recorded(choice) -> str | None:
    """The partner (a model.statistical value) a record of auto's choice names: train._choice's record,
    as a checkpoint, a manifest's metrics.statistical or a backtest window's training keeps it; None
    where there is no record or it names no partner."""
    chosen = choice.get("chosen") if isinstance(choice, dict) else None
    return chosen if chosen in STATISTICAL else None


def resolved(method: str, choice: dict | None, default: str = CANDIDATES[0]) -> str:
    """The partner model.statistical=`method` makes: itself, or for auto the one training chose (`choice`:
    the record train._choice keeps in the checkpoint), `default` without one: the first candidate where
    no series was long enough to train on, UNRECORDED for a checkpoint that records none."""
    if method != AUTO:
        return method
    return recorded(choice) or default


def chosen_partner(sums: np.ndarray, candidates: tuple[str, ...] = CANDIDATES) -> str:
    """The candidate with the lowest mean MASE in summed `partner_errors` (the first where none was
    scored or on a tie)."""
    sums = np.asarray(sums, dtype=np.float64)
    means = np.where(sums[:, 1] > 0, sums[:, 0] / np.maximum(sums[:, 1], 1), np.inf)
    return candidates[int(np.argmin(means))] if np.isfinite(means).any() else candidates[0]


def _adjusted(block: SeriesBlock, ends: np.ndarray, season: int,
              level: float = SEASONALITY_LEVEL) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """(the right-aligned points seasonally adjusted, the counts, the (series, season) multiplicative
    indices and additive components): divided by the indices where the seasonality test at `level` passes and
    every point is positive, minus the components where it passes otherwise; indices 1 and
    components 0 where it fails."""
    y, n = _right_aligned(block, ends)
    index, component = np.ones((len(n), max(season, 1))), np.zeros((len(n), max(season, 1)))
    if season > 1 and y.shape[1]:
        seasonal = _is_seasonal(y, n, season, level)
        positive = np.where(np.isnan(y), 1.0, y).min(axis=1) > 0
        for rows, additive, out in ((seasonal & positive, False, index), (seasonal & ~positive, True, component)):
            if rows.any():
                out[rows] = _seasonal_indices(y[rows], n[rows], season, additive)
    columns = np.arange(y.shape[1]) % index.shape[1]
    return y / index[:, columns] - component[:, columns], n, (index, component)


def _reseasonalised(forecast: np.ndarray, index: np.ndarray, component: np.ndarray, width: int) -> np.ndarray:
    """`forecast` of the adjusted series, from column `width` on, with its season put back: the
    additive components added, then multiplied by the indices (one of the two is neutral)."""
    future = np.broadcast_to((width + np.arange(forecast.shape[1])[None, :]) % index.shape[1], forecast.shape)
    return (forecast + np.take_along_axis(component, future, axis=1)) * np.take_along_axis(index, future, axis=1)


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


def _is_seasonal(y: np.ndarray, n: np.ndarray, season: int, level: float = SEASONALITY_LEVEL) -> np.ndarray:
    """The seasonality test of thetaf, at `level`: |acf(season)| / sqrt((1 + 2 sum acf(k<season)^2) / n) >
    seasonality_z(level)."""
    valid = ~np.isnan(y)
    mean = np.nanmean(y, axis=1, keepdims=True)
    d = np.where(valid, y - mean, 0.0)
    denominator = np.einsum("ij,ij->i", d, d)
    acf = np.stack([np.einsum("ij,ij->i", d[:, k:], d[:, :-k]) for k in range(1, season + 1)], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        acf = acf / denominator[:, None]
        stat = np.sqrt((1 + 2 * (acf[:, :-1] ** 2).sum(axis=1)) / n)
        significant = np.abs(acf[:, -1]) / stat > seasonality_z(level)
    return significant & (n > 2 * season) & (denominator > 0)


def _seasonal_indices(y: np.ndarray, n: np.ndarray, season: int, additive: bool = False) -> np.ndarray:
    """(series, season) multiplicative indices by column % season, normalised to mean 1: the mean
    ratio of the points to their centred moving average; `additive`: components normalised to mean 0,
    the mean difference to it."""
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
    # each point against its moving average: the difference, or the ratio
    detrended = (y[:, centre] - average) if additive else y[:, centre] / np.where(inside, average, 1.0)
    detrended = np.where(inside, detrended, np.nan)
    # their mean per position in the season, over those that exist: sums and counts per position as one
    # product with a (centre, season) indicator matrix
    observed = ~np.isnan(detrended)
    indicator = (centre[:, None] % season == np.arange(season)[None, :]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        index = (np.where(observed, detrended, 0.0) @ indicator) / (observed @ indicator)
    if additive:
        return index - index.mean(axis=1, keepdims=True)
    return index / index.mean(axis=1, keepdims=True)


def _smoothed(y: np.ndarray, n: np.ndarray, drift: bool = False
              ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """Simple exponential smoothing at every alpha of ALPHAS (the level starts at the first point; the
    left padding: `_filled`): (series, alphas) final levels and sums of squared one-step errors, and
    with `drift` what `_optimized` needs of the drift's one-step term without the slope, term(k) =
    (1 - (1 - alpha)^k) / alpha after k points: the sums of each one-step error times it, and of its
    squares over each series' steps (k = 1 .. n - 1)."""
    width = y.shape[1]
    filled, start = _filled(y, n)
    level = np.repeat(start, len(ALPHAS), axis=1)
    sse = np.zeros_like(level)
    error = np.empty_like(level)
    step = np.empty_like(level)
    if drift:
        cross = np.zeros_like(level)
        terms = _drift_terms(width)
        first = width - n
    for c in range(1, width):
        np.subtract(filled[c][:, None], level, out=error)
        if drift:  # the points seen before c: c - first (none on the padding, where the error is 0 anyway)
            cross += error * terms[np.maximum(c - first, 0)]
        np.multiply(ALPHAS, error, out=step)
        level += step
        error *= error
        sse += error
    if not drift:
        return level, sse, None
    return level, sse, (cross, np.cumsum(terms ** 2, axis=0)[np.maximum(n - 1, 0)])


def _drift_term(alpha: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Theta's drift term after k points of smoothing at `alpha`: (1 - (1 - alpha)^k) / alpha."""
    return (1 - (1 - alpha) ** k) / alpha


def _drift_terms(width: int) -> np.ndarray:
    """(width, alphas): _drift_term at every alpha of ALPHAS, for k = 0 .. width - 1."""
    return _drift_term(ALPHAS[None, :], np.arange(width)[:, None])


def _drifted(level: np.ndarray, alpha: np.ndarray, drift: np.ndarray, n: np.ndarray, horizon: int) -> np.ndarray:
    """(series, horizon) the SES `level` plus `drift` x the term of Theta's forecast after n points:
    f(j) = level + drift * (j - 1 + _drift_term(alpha, n))."""
    steps = np.arange(horizon)[None, :]
    return level[:, None] + drift[:, None] * (steps + _drift_term(alpha, n)[:, None])


def _optimized(levels: np.ndarray, sse: np.ndarray, cross: np.ndarray, squares: np.ndarray, slope: np.ndarray,
               n: np.ndarray, horizon: int) -> np.ndarray:
    """(series, horizon) the optimised Theta method (Fiorucci et al., 2016, as statsforecast's
    OptimizedTheta with its level starting at the first point): Theta's forecast with the drift
    weight * slope, weight = 1 - 1/theta, (alpha, theta) from ALPHAS x OPTIMIZED_THETAS by the sum of
    squared one-step errors. The one-step forecast after k points is the SES level plus
    weight * slope * term(k), so a grid point's sum is sse - 2 w b sum(e term) + (w b)^2 sum(term^2):
    the smoothing loop runs once per alpha, whatever the number of thetas (`_smoothed` sums for it)."""
    rows = np.arange(len(n))
    weights = 1 - 1 / OPTIMIZED_THETAS
    wb = weights[None, None, :] * slope[:, None, None]
    total = sse[:, :, None] - 2 * wb * cross[:, :, None] + wb ** 2 * squares[:, :, None]
    a, t = np.unravel_index(np.argmin(total.reshape(len(n), -1), axis=1), total.shape[1:])
    return _drifted(levels[rows, a], ALPHAS[a], weights[t] * slope, n, horizon)


def _filled(y: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the time-major points with the left padding filled with each series' first point, that point
    as a column): a model whose state starts at the first point then has zero error until the series
    starts, with no mask inside the loop over time."""
    rows, width = y.shape
    first = width - n
    start = y[np.arange(rows), np.minimum(first, width - 1)][:, None]
    return np.where(np.arange(width)[None, :] < first[:, None], start, y).T.copy(), start


def _damped(y: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Final level, trend and phi of Holt's damped-trend method in error-correction form (level at the
    first point, trend 0), with the grid point of DAMPED_* of least in-sample squared one-step error
    (the left padding: `_filled`; the second point's error is the same at every grid point, so that
    it counts does not change the choice).

    The loop runs in float32 (half the memory traffic of float64: about 1.8x faster) on each series
    minus its first point, which the method's equations allow (a constant shifts the level and
    nothing else): float32's rounding is then relative to how far the series moves from its start,
    not to its magnitude, so a large level with small moves keeps them."""
    rows, width = y.shape
    filled, start = _filled(y, n)
    filled = (filled - start[:, 0]).astype(np.float32)  # time-major: each column minus its series' start
    alphas, phis = DAMPED_ALPHAS.astype(np.float32), DAMPED_PHIS.astype(np.float32)
    gain = (DAMPED_ALPHAS * DAMPED_BETAS).astype(np.float32)
    level, trend, sse, error, step = (np.zeros((rows, len(DAMPED_ALPHAS)), np.float32) for _ in range(5))
    for c in range(1, width):
        trend *= phis
        level += trend  # the one-step forecast
        np.subtract(filled[c][:, None], level, out=error)
        np.multiply(gain, error, out=step)
        trend += step
        np.multiply(alphas, error, out=step)
        level += step
        error *= error
        sse += error
    best = np.argmin(sse, axis=1)
    chosen = (np.arange(rows), best)
    return start[:, 0] + level[chosen].astype(np.float64), trend[chosen].astype(np.float64), DAMPED_PHIS[best]


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
