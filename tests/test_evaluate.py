import numpy as np
import pytest

from forecaster.evaluate import interval_score, mase, mase_scale, seasonal_naive, smape, validation_scores
from forecaster.features import SeriesBlock


def test_seasonal_naive_repeats_last_season():
    block = SeriesBlock([np.arange(10.0)])
    forecast = seasonal_naive(block, np.array([8]), horizon=5, season=4)
    np.testing.assert_array_equal(forecast, [[4, 5, 6, 7, 4]])


def test_seasonal_naive_falls_back_to_naive_when_shorter_than_a_season():
    block = SeriesBlock([np.array([1.0, 2.0, 3.0])])
    np.testing.assert_array_equal(seasonal_naive(block, np.array([3]), 2, season=12), [[3, 3]])


def test_mase_scale_matches_direct_computation():
    rng = np.random.default_rng(0)
    series = [rng.normal(size=n) for n in (30, 5, 13)]
    block = SeriesBlock(series)
    ends = np.array([25, 5, 13])
    got = mase_scale(block, ends, season=12)
    expected = [
        np.abs(series[0][12:25] - series[0][:13]).mean(),
        np.abs(np.diff(series[1])).mean(),  # 5 points <= season: lag 1
        np.abs(series[2][12:13] - series[2][:1]).mean(),
    ]
    np.testing.assert_allclose(got, expected)


def test_mase_undefined_for_flat_history():
    assert np.isnan(mase(np.ones((1, 3)), np.zeros((1, 3)), np.array([0.0])))[0]


def test_smape_bounds():
    assert smape(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]))[0] == 0
    assert smape(np.array([[1.0]]), np.array([[-1.0]]))[0] == pytest.approx(200)


def test_validation_scores_perfect_forecast_has_zero_error():
    y = np.tile(np.arange(4.0), 6) + np.arange(24) * 0.1
    block = SeriesBlock([y])
    scores = validation_scores(block, {"lstm": y[None, -4:]}, horizon=4, season=4)
    assert scores["mase_lstm"][0] == 0
    assert scores["mase_seasonal_naive"][0] > 0


def test_the_interval_score_is_the_width_plus_the_misses_weighted_by_two_over_alpha_in_mase_units():
    """M4's MSIS: per step (hi - lo) + 2/alpha x the distance outside, averaged, over the MASE scale."""
    actual = np.array([[10.0, 10.0, 10.0], [5.0, 5.0, 5.0]])
    lo = np.array([[9.0, 11.0, 6.0], [4.0, 4.0, np.nan]])
    hi = np.array([[11.0, 12.0, 8.0], [6.0, 6.0, 6.0]])
    scale = np.array([2.0, 0.0])
    # alpha 0.2: 2/alpha = 10; steps: inside (width 2), below by 1 (1 + 10), above by 2 (2 + 20)
    expected = (2.0 + 11.0 + 22.0) / 3 / 2.0
    score = interval_score(actual, lo, hi, 80, scale)
    assert score[0] == pytest.approx(expected) and np.isnan(score[1])
    # covering more by widening an interval that already covered only costs
    wide = interval_score(actual[:1], lo[:1] - 5, hi[:1] + 5, 80, scale[:1])
    assert wide[0] > interval_score(actual[:1], np.array([[9.0, 9.0, 9.0]]), np.array([[11.0, 11.0, 11.0]]), 80,
                                    scale[:1])[0]
