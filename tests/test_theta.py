"""The Theta baseline (forecaster/theta.py): its closed forms, its seasonality handling, and that the
vectorised block gives each series the forecast it would get alone."""

import numpy as np

from forecaster.features import SeriesBlock
from forecaster.theta import MAX_HISTORY, _is_seasonal, _right_aligned, theta


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


def test_noise_is_not_seasonal_and_short_or_non_positive_series_are_not_adjusted():
    rng = np.random.default_rng(0)
    noise = 50 + rng.normal(size=120)
    seasonal = 100.0 * np.tile([1.0, 2.0, 0.5, 1.5], 30)
    short = 100.0 * np.tile([1.0, 2.0, 0.5, 1.5], 2)  # two seasons: too short for the test
    negative = seasonal - 120.0  # seasonal but not positive: no multiplicative decomposition
    block = SeriesBlock([noise, seasonal, short, negative])
    y, n = _right_aligned(block, block.lengths)
    np.testing.assert_array_equal(_is_seasonal(y, n, 4), [False, True, False, False])


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
