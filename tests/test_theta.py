"""The statistical baselines (forecaster/theta.py): Theta's closed forms, its seasonality handling, and
that the vectorised block gives each series the forecast it would get alone; damped-trend and simple
exponential smoothing against plain loops; the partner model.statistical makes, and the errors
model.statistical=auto chooses it by."""

import numpy as np
import pytest

from forecaster.columns import DAMPED, OPTIMIZED_THETA, SES, THETA
from forecaster.evaluate import mase
from forecaster.features import SeriesBlock
from forecaster.theta import (
    ALPHAS,
    CANDIDATES,
    DAMPED_ALPHAS,
    DAMPED_BETAS,
    DAMPED_PHIS,
    MAX_HISTORY,
    OPTIMIZED_THETAS,
    _is_seasonal,
    _right_aligned,
    chosen_partner,
    damped_trend,
    optimized_theta,
    partner,
    partner_errors,
    partner_name,
    seasonality_z,
    ses,
    statistical,
    theta,
)


def test_a_straight_line_gets_half_its_slope_from_the_last_point():
    """On a line SES keeps alpha = 1 (every smaller alpha lags behind), so the level is the last
    point and the drift is half the line's slope: f(j) = y_n + slope / 2 * j."""
    line = 5.0 + 2.0 * np.arange(30)
    forecast = theta(SeriesBlock([line]), np.array([30]), 4, 1)
    np.testing.assert_allclose(forecast[0], line[-1] + 1.0 * np.arange(1, 5))


def test_a_constant_series_is_forecast_flat():
    forecast = theta(SeriesBlock([np.full(40, 7.0)]), np.array([40]), 6, 12)
    np.testing.assert_allclose(forecast[0], 7.0)


def test_a_multiplicative_season_is_carried_into_the_future():
    pattern = np.array([1.0, 1.5, 0.5, 1.2])
    series = 100.0 * np.tile(pattern, 10)
    block = SeriesBlock([series])
    y, n = _right_aligned(block, block.lengths)
    assert _is_seasonal(y, n, 4).all()
    forecast = theta(block, block.lengths, 8, 4)
    np.testing.assert_allclose(forecast[0], 100.0 * np.tile(pattern, 2), rtol=1e-6)


def test_noise_is_not_seasonal_and_short_series_are_not_adjusted():
    rng = np.random.default_rng(0)
    noise = 50 + rng.normal(size=120)
    seasonal = 100.0 * np.tile([1.0, 2.0, 0.5, 1.5], 30)
    short = 100.0 * np.tile([1.0, 2.0, 0.5, 1.5], 2)  # two seasons: too short for the test
    negative = seasonal - 120.0  # seasonal, not positive: tested all the same (adjusted additively)
    block = SeriesBlock([noise, seasonal, short, negative])
    y, n = _right_aligned(block, block.lengths)
    np.testing.assert_array_equal(_is_seasonal(y, n, 4), [False, True, False, True])


def test_a_season_of_a_series_with_zeros_or_negatives_is_additive_and_carried_into_the_future():
    """No ratio exists where a point is zero or negative: such a series is adjusted by the additive
    decomposition, and every method forecasts its season, shifted as the series is."""
    pattern = np.array([0.0, 40.0, -20.0, 20.0])
    series = [20.0 + np.tile(pattern, 10), np.tile(pattern, 10)]  # the first has zeros, the second negatives
    block = SeriesBlock(series)
    forecasts = statistical(block, block.lengths, 8, 4)
    for name in (THETA, DAMPED, SES):
        np.testing.assert_allclose(forecasts[name][0], 20.0 + np.tile(pattern, 2), atol=1e-6)
        np.testing.assert_allclose(forecasts[name][1], np.tile(pattern, 2), atol=1e-6)


def test_the_seasonality_test_calls_about_half_of_white_noise_seasonal():
    """The test is at 50 % by default (SEASONALITY_LEVEL), not thetaf's 90 %: under no season its statistic
    is about standard normal, so about half of many white-noise series pass it; at model.seasonality_level
    0.9, as thetaf, about a tenth; at 1, none."""
    rng = np.random.default_rng(0)
    block = SeriesBlock([50 + rng.normal(size=120) for _ in range(2000)])
    y, n = _right_aligned(block, block.lengths)
    assert 0.45 < _is_seasonal(y, n, 4).mean() < 0.55
    assert 0.07 < _is_seasonal(y, n, 4, 0.9).mean() < 0.13 and not _is_seasonal(y, n, 4, 1.0).any()
    assert seasonality_z(0.5) == pytest.approx(0.6745, abs=1e-4)
    assert seasonality_z(0.9) == pytest.approx(1.6449, abs=1e-4)


def test_at_seasonality_level_1_no_series_is_adjusted_for_its_season():
    """model.seasonality_level=1 (for data known to have no season): every method forecasts the series
    as it is; SES is then flat at its level even where the series has a strong season."""
    pattern = np.array([1.0, 1.5, 0.5, 1.2])
    block = SeriesBlock([100.0 * np.tile(pattern, 10)])
    adjusted = statistical(block, block.lengths, 8, 4)
    plain = statistical(block, block.lengths, 8, 4, level=1.0)
    np.testing.assert_allclose(adjusted[SES][0], 100.0 * np.tile(pattern, 2), rtol=1e-9)
    np.testing.assert_allclose(plain[SES][0], plain[SES][0, 0])
    np.testing.assert_allclose(plain[THETA], statistical(block, block.lengths, 8, 1)[THETA])  # as without a season


def test_a_block_forecasts_each_series_as_alone_and_ends_cut_the_history():
    rng = np.random.default_rng(1)
    series = [np.abs(rng.normal(100, 20, size)) * (1 + 0.5 * np.sin(np.arange(size) * np.pi / 6))
              for size in (13, 40, 97, 25, 3, 1)]
    block = SeriesBlock(series)
    together = theta(block, block.lengths, 6, 12)
    for i, values in enumerate(series):
        alone = theta(SeriesBlock([values]), np.array([len(values)]), 6, 12)
        np.testing.assert_allclose(together[i], alone[0], rtol=1e-12)
    assert np.isfinite(together).all()
    ends = np.maximum(block.lengths - 6, 1)
    cut = theta(block, ends, 6, 12)
    for i, values in enumerate(series):
        alone = theta(SeriesBlock([values[:ends[i]]]), ends[i:i + 1], 6, 12)
        np.testing.assert_allclose(cut[i], alone[0], rtol=1e-12)


def test_only_the_history_before_the_end_matters():
    rng = np.random.default_rng(2)
    values = 100 + rng.normal(size=60).cumsum()
    changed = values.copy()
    changed[50:] += 1000.0
    forecasts = theta(SeriesBlock([values, changed]), np.array([50, 50]), 5, 12)
    np.testing.assert_allclose(forecasts[0], forecasts[1])


def test_a_long_series_is_forecast_from_its_last_max_history_points():
    rng = np.random.default_rng(3)
    long = 100 + rng.normal(size=MAX_HISTORY + 50).cumsum()
    short = 100 + rng.normal(size=30).cumsum()
    block = SeriesBlock([long, short])
    y, n = _right_aligned(block, block.lengths)
    assert y.shape == (2, MAX_HISTORY) and list(n) == [MAX_HISTORY, 30]
    np.testing.assert_array_equal(y[0], long[-MAX_HISTORY:])
    assert np.isnan(y[1, :-30]).all() and (y[1, -30:] == short).all()
    forecast = theta(block, block.lengths, 6, 12)
    alone = theta(SeriesBlock([long[-MAX_HISTORY:]]), np.array([MAX_HISTORY]), 6, 12)
    np.testing.assert_allclose(forecast[0], alone[0], rtol=1e-12)


# ---- damped trend ------------------------------------------------------------------------------

def _damped_by_loop(y: np.ndarray, horizon: int) -> np.ndarray:
    """Holt's damped trend written out for one unadjusted series, every grid point tried in turn: the
    reference the vectorised version must equal."""
    best = (np.inf, None)
    for alpha, beta, phi in zip(DAMPED_ALPHAS, DAMPED_BETAS, DAMPED_PHIS, strict=True):
        level, trend, sse = y[0], 0.0, 0.0
        for t in range(1, len(y)):
            forecast = level + phi * trend
            error = y[t] - forecast
            level, trend = forecast + alpha * error, phi * trend + alpha * beta * error
            sse += error * error if t >= 2 else 0.0  # the second point's error is the same everywhere
        if sse < best[0]:
            best = (sse, (level, trend, phi))
    level, trend, phi = best[1]
    return level + np.cumsum(phi ** np.arange(1, horizon + 1)) * trend


@pytest.mark.parametrize("rows", [512, 3])  # DAMPED_ROWS: one pass, or passes of 3 series
def test_damped_trend_of_a_ragged_block_equals_a_plain_loop_per_series(rows, monkeypatch):
    """Series of different lengths (left padding in the right-aligned matrix) and ends that cut them:
    each gets the forecast of the loop (float64) over its own points, to float32's rounding."""
    monkeypatch.setattr("forecaster.theta.DAMPED_ROWS", rows)
    rng = np.random.default_rng(3)
    series = [50 + np.cumsum(rng.normal(0.5, 2.0, size=n)) for n in (9, 25, 40, 3)]
    _each_as_its_loop(damped_trend, _damped_by_loop, series, [9, 20, 40, 3], 5, rtol=1e-6)


def _each_as_its_loop(method, loop, series: list, ends: list, horizon: int, rtol: float) -> None:
    """`method` (theta's signature) on a block of `series` cut at `ends`, without a season (nothing
    adjusted), gives each series what `loop` gives its own points."""
    forecast = method(SeriesBlock(series), np.array(ends), horizon, 1)
    for i, (values, end) in enumerate(zip(series, ends, strict=True)):
        np.testing.assert_allclose(forecast[i], loop(values[:end], horizon), rtol=rtol)


def test_damped_trend_keeps_small_moves_of_a_large_level():
    """float32 holds 7 digits: a series at 10^7 that moves by units would lose its moves if the loop ran
    on the values themselves; it runs on the moves from the first point, so the forecast matches the
    float64 loop to a small fraction of a unit."""
    rng = np.random.default_rng(4)
    series = 1e7 + np.cumsum(rng.normal(0.3, 1.0, size=60))
    forecast = damped_trend(SeriesBlock([series]), np.array([60]), 5, 1)[0]
    np.testing.assert_allclose(forecast, _damped_by_loop(series, 5), rtol=0, atol=0.01)


def test_damped_trend_follows_a_line_and_damps_its_slope():
    """On a line the one-step forecasts follow the slope; the forecast's first step is close to the
    slope and below it, and its steps shrink (phi < 1, the damping), so it stays below the line."""
    line = 5.0 + 2.0 * np.arange(30)
    forecast = damped_trend(SeriesBlock([line]), np.array([30]), 6, 1)[0]
    steps = np.diff(np.concatenate([[line[-1]], forecast]))
    assert 0.9 * 2.0 < steps[0] < 2.0
    assert (np.diff(steps) < 0).all() and (forecast < line[-1] + 2.0 * np.arange(1, 7)).all()


def test_damped_trend_carries_a_multiplicative_season_and_a_flat_series_stays_flat():
    pattern = np.array([1.0, 1.5, 0.5, 1.2])
    block = SeriesBlock([100.0 * np.tile(pattern, 10), np.full(40, 7.0)])
    forecast = damped_trend(block, block.lengths, 8, 4)
    np.testing.assert_allclose(forecast[0], 100.0 * np.tile(pattern, 2), rtol=1e-6)
    np.testing.assert_allclose(forecast[1], 7.0)


def _ses_by_loop(values: np.ndarray, horizon: int) -> np.ndarray:
    """Simple exponential smoothing, one series, float64: level from the first point, alpha from ALPHAS
    by the sum of squared one-step errors, a flat forecast."""
    best = None
    for alpha in ALPHAS:
        level, sse = values[0], 0.0
        for y in values[1:]:
            sse += (y - level) ** 2
            level += alpha * (y - level)
        if best is None or sse < best[0]:
            best = (sse, level)
    return np.full(horizon, best[1])


def test_ses_of_a_ragged_block_equals_a_plain_loop_per_series():
    rng = np.random.default_rng(5)
    series = [20 + np.cumsum(rng.normal(0.0, 1.0, size=n)) for n in (7, 30, 18)]
    _each_as_its_loop(ses, _ses_by_loop, series, [7, 22, 18], 4, rtol=1e-12)


def test_ses_is_flat_without_a_season_and_carries_a_multiplicative_one():
    """SES has no trend: a line is forecast flat at its last point (alpha 1); a seasonal series gets its
    level times the seasonal indices, as Theta's adjustment gives them."""
    line = 5.0 + 2.0 * np.arange(30)
    np.testing.assert_allclose(ses(SeriesBlock([line]), np.array([30]), 4, 1)[0], line[-1])
    pattern = np.array([1.0, 1.5, 0.5, 1.2])
    seasonal = SeriesBlock([100.0 * np.tile(pattern, 10)])
    np.testing.assert_allclose(ses(seasonal, seasonal.lengths, 8, 4)[0], 100.0 * np.tile(pattern, 2), rtol=1e-9)


def _optimized_theta_by_loop(values: np.ndarray, horizon: int) -> np.ndarray:
    """The optimised Theta method written out for one series, every (alpha, theta) tried in turn: the
    one-step forecast after t points is the SES level plus (1 - 1/theta) x the least-squares slope x
    (1 - (1 - alpha)^t) / alpha, the grid point of least squared one-step error wins."""
    slope = np.polyfit(np.arange(len(values)), values, 1)[0] if len(values) > 1 else 0.0
    best = None
    for alpha in ALPHAS:
        for theta_ in OPTIMIZED_THETAS:
            weight, level, sse = 1 - 1 / theta_, values[0], 0.0
            for t in range(1, len(values)):
                sse += (values[t] - level - weight * slope * (1 - (1 - alpha) ** t) / alpha) ** 2
                level += alpha * (values[t] - level)
            if best is None or sse < best[0] * (1 - 1e-12):  # the first of (numerically) tied grid points
                best = (sse, level, alpha, weight)
    _, level, alpha, weight = best
    n = len(values)
    return level + weight * slope * (np.arange(horizon) + (1 - (1 - alpha) ** n) / alpha)


def test_optimized_theta_of_a_ragged_block_equals_a_plain_loop_per_series():
    """The vectorised method (one smoothing loop per alpha, every theta's error sum from two running
    sums) gives each series of different lengths and ends what the plain grid search gives it."""
    rng = np.random.default_rng(9)
    series = [40 + np.cumsum(rng.normal(drift, 1.5, size=n))
              for drift, n in ((0.8, 12), (0.0, 35), (-0.5, 28), (2.0, 4))]
    _each_as_its_loop(optimized_theta, _optimized_theta_by_loop, series, [12, 30, 28, 4], 6, rtol=1e-9)


def test_optimized_theta_follows_a_steady_trend_that_theta_halves():
    """Theta's drift is half the slope, by construction; on a series that rises at a steady rate the
    optimised Theta fits a larger drift weight, so its forecast stays closer to the continued line.
    On a line the steady one-step error is (1 - weight) x slope / alpha, least at alpha 1 and theta 10:
    the forecast goes on from the last point at 0.9 x the slope."""
    rng = np.random.default_rng(10)
    t = np.arange(48.0)
    series = 100 + 2.0 * t + rng.normal(0, 1.0, 48)
    block = SeriesBlock([series])
    future = 100 + 2.0 * np.arange(48, 54)
    optimized, standard = optimized_theta(block, block.lengths, 6, 1)[0], theta(block, block.lengths, 6, 1)[0]
    assert np.abs(optimized - future).mean() < 0.5 * np.abs(standard - future).mean()
    line = 5.0 + 2.0 * np.arange(30)
    np.testing.assert_allclose(optimized_theta(SeriesBlock([line]), np.array([30]), 4, 1)[0],
                               line[-1] + 0.9 * 2.0 * np.arange(1, 5))


def test_the_partner_of_model_statistical():
    """otm_damped: the mean of the optimised Theta and DampedTrend; theta_damped: of Theta and
    DampedTrend; theta_ses: of Theta and SES; theta: Theta alone; named as the `model` column says.
    auto is never a partner itself: it is resolved per run."""
    block = SeriesBlock([50 + np.arange(30.0) ** 1.2, 10 + np.sin(np.arange(24.0))])
    methods = statistical(block, block.lengths, 4, 1)
    assert set(methods) == {THETA, DAMPED, SES, OPTIMIZED_THETA}
    np.testing.assert_allclose(methods[THETA], theta(block, block.lengths, 4, 1))
    np.testing.assert_allclose(methods[OPTIMIZED_THETA], optimized_theta(block, block.lengths, 4, 1))
    np.testing.assert_allclose(partner(methods, "otm_damped"), (methods[OPTIMIZED_THETA] + methods[DAMPED]) / 2)
    assert partner_name("otm_damped") == "OptimizedTheta+DampedTrend"
    np.testing.assert_allclose(partner(methods, "theta_damped"), (methods[THETA] + methods[DAMPED]) / 2)
    np.testing.assert_allclose(partner(methods, "theta_ses"), (methods[THETA] + methods[SES]) / 2)
    np.testing.assert_array_equal(partner(methods, "theta"), methods[THETA])
    assert partner_name("theta_damped") == "Theta+DampedTrend" and partner_name("theta") == "Theta"
    assert partner_name("theta_ses") == "Theta+SES"
    assert set(statistical(block, block.lengths, 4, 1, (THETA,))) == {THETA}
    with pytest.raises(ValueError, match="model.statistical='auto'.*resolved per run"):
        partner(methods, "auto")


def test_partner_errors_score_each_candidate_on_the_last_horizons_refitted_before_each():
    """The sums equal a direct computation: for each of the last 3 horizons of each series with at least
    two points before it, the candidate fitted on the points before that horizon, its MASE there (scale
    from those points); a series too short for a window (here the 9-point one for the third, and the
    5-point one for all but the first) adds nothing to it, and a missing point drops the window it lies
    in and every later one (their MASE scale is undefined, as in validation's scores)."""
    rng = np.random.default_rng(6)
    series = [30 + np.cumsum(rng.normal(0.4, 1.0, size=n)) for n in (40, 9, 5, 26)]
    series[3][20] = np.nan  # in the last horizon but one of the 26-point series
    block, horizon, season = SeriesBlock(series), 3, 1
    expected = np.zeros((len(CANDIDATES), 2))
    for values in series:
        for k in (1, 2, 3):
            cut = len(values) - k * horizon
            if cut < 2:
                continue
            one = SeriesBlock([values[:cut]])
            forecasts = statistical(one, one.lengths, horizon, season)
            scale = np.abs(np.diff(values[:cut])).mean()
            actual = values[cut:cut + horizon][None, :]
            for i, candidate in enumerate(CANDIDATES):
                score = mase(actual, partner(forecasts, candidate), np.array([scale]))[0]
                if np.isfinite(score):
                    expected[i] += score, 1
    sums = partner_errors(block, horizon, season)
    np.testing.assert_allclose(sums, expected, rtol=1e-9)
    assert sums[0, 1] == 3 + 2 + 1 + 1  # (series, window) pairs: 40 -> 3, 9 -> 2, 5 -> 1, 26 -> the first


def test_partner_errors_take_the_last_window_from_the_caller(monkeypatch):
    """Validation has Theta, DampedTrend and SES fitted on the last horizon already: given them (`last`),
    partner_errors fits only the windows before it, and sums the same."""
    from forecaster import theta as module
    from forecaster.evaluate import holdout_actual, mase_scale

    rng = np.random.default_rng(8)
    block, horizon = SeriesBlock([20 + np.cumsum(rng.normal(0.2, 1.0, size=n)) for n in (30, 24, 16)]), 4
    cutoffs = block.lengths - horizon
    last = (statistical(block, cutoffs, horizon, 1), holdout_actual(block, horizon), mase_scale(block, cutoffs, 1))
    expected = partner_errors(block, horizon, 1)
    fits = []
    monkeypatch.setattr(module, "statistical", lambda *a, **k: fits.append(a[1]) or statistical(*a, **k))
    np.testing.assert_allclose(partner_errors(block, horizon, 1, last=last), expected, rtol=1e-12)
    assert len(fits) == 2 and all((ends < cutoffs).all() for ends in fits)  # the two windows before the last


def test_the_chosen_partner_has_the_lower_mean_error():
    assert chosen_partner(np.array([[10.0, 8.0], [9.0, 8.0]])) == CANDIDATES[1]
    assert chosen_partner(np.array([[9.0, 8.0], [9.0, 8.0]])) == CANDIDATES[0]  # a tie: the first
    assert chosen_partner(np.zeros((2, 2))) == CANDIDATES[0]  # nothing scored
    assert chosen_partner(np.array([[10.0, 5.0], [18.0, 10.0]])) == CANDIDATES[1]  # means 2.0 and 1.8


def test_partner_errors_prefer_the_damped_trend_on_trends_that_carry_on():
    """On series that keep their trend, the optimised Theta with the damped trend errs less than Theta
    with SES (which forecasts flat), so auto would pick otm_damped."""
    rng = np.random.default_rng(7)
    block = SeriesBlock([10 + 0.8 * np.arange(60) + rng.normal(0, 0.5, 60) for _ in range(20)])
    assert chosen_partner(partner_errors(block, 6, 1)) == "otm_damped"
