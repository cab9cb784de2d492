import numpy as np
import pytest

from forecaster.covariates import FeatureSpec
from forecaster.features import (
    NAIVE_UNIT_FLOOR,
    SeriesBlock,
    Windows,
    forecast_windows,
    make_windows,
    naive_unit,
    series_stats,
    training_cutoffs,
    training_windows,
    validation_windows,
    window_stats,
)
from tests.specs import model_spec


def _block(*series):
    return SeriesBlock([np.asarray(s, dtype=float) for s in series])


def _spec(input_size: int, horizon: int, scaler: str = "window", scaler_type: str = "robust"):
    """The default model's windows for blocks without covariates (hand-made blocks have none)."""
    return model_spec(f"model.input_size={input_size}", f"model.horizon={horizon}", f"model.scaler={scaler}",
                      f"model.scaler_type={scaler_type}", features=FeatureSpec())


def test_series_block_offsets_match_list_input():
    a = _block([1, 2, 3], [4, 5])
    b = SeriesBlock(np.array([1, 2, 3, 4, 5.0]), np.array([0, 3, 5]))
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.starts, [0, 3])
    np.testing.assert_array_equal(b.lengths, [3, 2])


def test_window_indices_and_padding():
    block = _block(np.arange(10) + 100.0)
    w = make_windows(block, np.array([0]), np.array([3]), np.array([10]), _spec(5, 4, scaler="series"))
    raw_inputs = w.inputs * w.scale + w.loc
    np.testing.assert_array_equal(w.input_mask, [[0, 0, 1, 1, 1]])  # 2 padded steps before the start
    np.testing.assert_allclose(raw_inputs[0, 2:], [100, 101, 102])
    np.testing.assert_array_equal(w.inputs[0, :2], [0, 0])
    np.testing.assert_allclose((w.targets * w.scale + w.loc)[0], [103, 104, 105, 106])
    np.testing.assert_array_equal(w.target_mask, [[1, 1, 1, 1]])


def test_targets_past_the_limit_are_masked():
    block = _block(np.arange(10.0))
    w = make_windows(block, np.array([0]), np.array([8]), np.array([10]), _spec(3, 4))
    np.testing.assert_array_equal(w.target_mask, [[1, 1, 0, 0]])
    np.testing.assert_array_equal(w.targets[0, 2:], [0, 0])


def test_naive_unit_is_the_inputs_mean_absolute_seasonal_difference_in_scaled_units():
    inputs = np.array([[0, 2, 0, 3, 1, 2.0],  # lag 2: |0-0| |3-2| |1-0| |2-3| -> 0.75
                       [0, 0, 5, 7, 5, 7.0],  # the first two unobserved: lag 2 pairs |5-5| |7-7| -> floor
                       [0, 0, 0, 0, 1, 4.0],  # only the last two observed: no lag-2 pair, lag 1 -> 3
                       [0, 0, 0, 0, 0, 9.0]])  # one observed point: no pair at all -> 1
    mask = np.array([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1], [0, 0, 0, 0, 0, 1.0]])
    windows = Windows(inputs=inputs, input_mask=mask, targets=np.zeros((4, 1)), target_mask=np.ones((4, 1)),
                      loc=np.zeros((4, 1)), scale=np.ones((4, 1)))
    np.testing.assert_allclose(naive_unit(windows, season=2), [0.75, NAIVE_UNIT_FLOOR, 3.0, 1.0])
    # a season longer than the window: lag 1 throughout
    np.testing.assert_allclose(naive_unit(windows, season=12)[0], np.mean([2, 2, 3, 2, 1]))


def test_validation_window_holds_out_last_horizon():
    block = _block(np.arange(12.0), np.arange(7.0) * 2)
    w = validation_windows(block, _spec(4, 3))
    raw_targets = w.targets * w.scale + w.loc
    np.testing.assert_allclose(raw_targets, [[9, 10, 11], [8, 10, 12]])
    np.testing.assert_allclose((w.inputs * w.scale + w.loc)[0], [5, 6, 7, 8])


def test_forecast_window_ends_at_last_point():
    block = _block(np.arange(12.0))
    w = forecast_windows(block, _spec(4, 3))
    np.testing.assert_allclose((w.inputs * w.scale + w.loc)[0], [8, 9, 10, 11])
    assert w.target_mask.sum() == 0


def test_training_cutoffs_stay_inside_training_part():
    rng = np.random.default_rng(0)
    lengths = np.array([5, 30, 2])
    series, cutoffs = training_cutoffs(lengths, horizon=4, windows_per_series=200, rng=rng)
    n = lengths[series]
    assert (cutoffs >= 1).all()
    assert (cutoffs <= n - 1).all()
    long = n >= 5
    assert (cutoffs[long] <= n[long] - 4).all()  # full targets where the series allows
    assert set(cutoffs[series == 1]) == set(range(1, 27))  # every cutoff is reachable


def test_training_cutoffs_keep_min_inputs_where_possible():
    rng = np.random.default_rng(0)
    lengths = np.array([40, 3])
    series, cutoffs = training_cutoffs(lengths, horizon=6, windows_per_series=300, rng=rng, min_inputs=5)
    assert cutoffs[series == 0].min() == 5 and cutoffs[series == 0].max() == 34
    assert set(cutoffs[series == 1]) == {2}  # 3 points: the only cutoff with a target is 2


def test_recent_horizons_draw_cutoffs_only_near_the_end_of_the_training_part():
    """train.recent_horizons=2 with horizon 6: cutoffs at most 12 points before the latest (34 of a
    40-point part), every one of them reachable; a part shorter than that keeps its own range, and the
    limit comes through LoopSettings in points."""
    from forecaster.config import load_config
    from forecaster.spec import LoopSettings

    rng = np.random.default_rng(0)
    lengths = np.array([40, 12])
    series, cutoffs = training_cutoffs(lengths, horizon=6, windows_per_series=400, rng=rng, min_inputs=5,
                                       recent=12)
    assert set(cutoffs[series == 0]) == set(range(22, 35))
    assert set(cutoffs[series == 1]) == set(range(5, 7))
    settings = LoopSettings.from_config(load_config(None, ["train.recent_horizons=1.5"]))
    assert settings.recent_points(8) == 12 and settings.recent_points(6) == 9
    assert LoopSettings.from_config(load_config(None, ["train.recent_horizons=null"])).recent_points(8) is None


def test_the_training_loop_draws_its_windows_within_train_recent_horizons():
    """minibatches (the loop's windows) pass train.recent_horizons on: on y = 0, 1, 2, ... each window's first
    target is its cutoff, all within 2 horizons of the training part's latest (34 of 40 points)."""
    import dataclasses

    from forecaster.config import load_config
    from forecaster.spec import LoopSettings
    from forecaster.train import minibatches
    from tests.test_predict import _batch

    cfg = load_config(None, ["model.horizon=6", "model.input_size=8", "train.recent_horizons=2"])
    settings = dataclasses.replace(LoopSettings.from_config(cfg), windows_per_series=200)
    spec = model_spec("model.horizon=6", "model.input_size=8")
    windows, _ = next(minibatches([_batch({"a": np.arange(46.0)})], spec, settings, np.random.default_rng(0), 1000))
    first = np.round(windows.unscale(windows.targets)[:, 0]).astype(int)
    assert set(first) == set(range(22, 35))


def test_refit_windows_take_targets_from_the_validation_part_too():
    """train.refit_epochs: windows from whole series reach the last point; only those see it."""
    horizon = 4
    y = np.arange(40, dtype=float)
    spec = _spec(8, horizon)
    part = training_windows(_block(y), spec, 200, np.random.default_rng(1))
    whole = training_windows(_block(y), spec, 200, np.random.default_rng(1), whole=True)
    last = lambda w: (w.targets * w.scale + w.loc)[w.target_mask > 0].max()  # noqa: E731
    assert last(part) == pytest.approx(35) and last(whole) == pytest.approx(39)


def test_training_windows_never_see_the_validation_part():
    """No look-ahead: values in the last `horizon` points change nothing in training windows."""
    horizon = 4
    y = np.sin(np.arange(40)) * 10 + 50
    changed = y.copy()
    changed[-horizon:] = 1e6
    a = training_windows(_block(y), _spec(8, horizon), 50, np.random.default_rng(1))
    b = training_windows(_block(changed), _spec(8, horizon), 50, np.random.default_rng(1))
    for field in ("inputs", "input_mask", "targets", "target_mask", "loc", "scale"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_series_scaler_statistics_use_training_part_only():
    horizon = 4
    y = np.arange(30.0)
    changed = y.copy()
    changed[-horizon:] = -1e6
    spec = _spec(8, horizon, scaler="series")
    a = training_windows(_block(y), spec, 10, np.random.default_rng(0))
    b = training_windows(_block(changed), spec, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(a.loc, b.loc)
    np.testing.assert_array_equal(a.scale, b.scale)
    # validation and forecast windows scale with the same training-part statistics
    va = validation_windows(_block(y), spec)
    vb = validation_windows(_block(changed), spec)
    np.testing.assert_array_equal(va.loc, vb.loc)
    fa = forecast_windows(_block(y), spec)
    np.testing.assert_array_equal(fa.loc, va.loc)
    loc, _ = series_stats(_block(y), np.array([0]), np.array([26]), "robust")
    assert loc[0, 0] == pytest.approx(np.median(y[:26]))


def test_window_scaler_uses_only_observed_inputs():
    values = np.array([[0.0, 0.0, 10.0, 20.0, 30.0]])
    mask = np.array([[0, 0, 1, 1, 1.0]])
    loc, scale = window_stats(values, mask, "robust")
    assert loc[0, 0] == pytest.approx(20.0)
    assert scale[0, 0] == pytest.approx(10.0)  # IQR of 10, 20, 30


@pytest.mark.parametrize("row,expected_scale", [
    ([5.0, 5.0, 5.0, 5.0], 5.0),  # flat: IQR 0, MAD 0 -> |median|
    ([0.0, 0.0, 0.0, 0.0], 1.0),  # all zero -> 1
    ([1.0, 1.0, 1.0, 9.0], 2.0),  # IQR 0 -> mean absolute deviation from the median
])
def test_robust_stats_fallbacks(row, expected_scale):
    loc, scale = window_stats(np.array([row]), np.ones((1, 4)), "robust")
    assert scale[0, 0] == pytest.approx(expected_scale)
    assert np.isfinite(loc).all()


@pytest.mark.parametrize("scaler_type", ["robust", "standard", "minmax", "none"])
def test_unscale_gives_back_the_series_values(scaler_type):
    y = np.linspace(100, 200, 30)
    w = validation_windows(_block(y), _spec(10, 5, scaler_type=scaler_type))
    np.testing.assert_allclose(w.unscale(w.targets), [y[-5:]])  # the held-out points, in the series' units
    assert not np.allclose(w.targets, [y[-5:]]) or scaler_type == "none"  # and scaling did change them
    assert w.features().shape == (1, 10, 2)
    assert w.features().dtype == np.float32


def test_series_block_from_sliced_and_chunked_arrow():
    import pyarrow as pa

    column = pa.array([[1.0, 2.0], [3.0], [4.0, 5.0, 6.0]], pa.list_(pa.float64()))
    block = SeriesBlock.from_arrow(column.slice(1))  # offsets start at 2, not 0
    np.testing.assert_array_equal(block.values, [3, 4, 5, 6])
    np.testing.assert_array_equal(block.lengths, [1, 3])
    chunked = SeriesBlock.from_arrow(pa.chunked_array([column.slice(0, 1), column.slice(2)]))
    np.testing.assert_array_equal(chunked.values, [1, 2, 4, 5, 6])
    np.testing.assert_array_equal(chunked.starts, [0, 2])


def test_an_epochs_windows_are_capped_whatever_the_number_of_series():
    """train.max_windows_per_epoch: the nightly budget does not grow with the series count."""
    from forecaster.config import load_config
    from forecaster.spec import LoopSettings, windows_per_series

    cfg = load_config(None, ["train.windows_per_series=32", "train.max_windows_per_epoch=1000"])
    assert windows_per_series(cfg, 10) == 32 and isinstance(windows_per_series(cfg, 31), int)  # under the cap
    assert windows_per_series(cfg, 100) == pytest.approx(10.0) and windows_per_series(cfg, 4000) == 0.25
    assert LoopSettings.from_config(cfg, 4000).windows_per_series == 0.25
    uncapped = load_config(None, ["train.windows_per_series=32", "train.max_windows_per_epoch=null"])
    assert windows_per_series(uncapped, 10**6) == 32


def test_the_default_budget_leaves_m1_alone_and_bounds_a_million_series():
    """The defaults: M1 monthly (617 series) trains and validates as without any cap; 1 M series get
    train.max_windows_per_epoch windows an epoch and train.max_validation_series validated series."""
    from forecaster.config import load_config
    from forecaster.spec import LoopSettings

    cfg = load_config(None, [])
    m1 = LoopSettings.from_config(cfg, 617)
    assert m1.windows_per_series == cfg.train.windows_per_series and isinstance(m1.windows_per_series, int)
    assert m1.validation_share == 1.0
    million = LoopSettings.from_config(cfg, 10**6)
    assert million.windows_per_series * 10**6 == pytest.approx(cfg.train.max_windows_per_epoch)
    assert million.validation_share * 10**6 == pytest.approx(cfg.train.max_validation_series)
    off = LoopSettings.from_config(load_config(None, ["train.max_validation_series=null"]), 10**6)
    assert off.validation_share == 1.0


def test_validation_takes_the_same_series_whatever_their_blocks():
    import pyarrow as pa

    from forecaster.train import validated

    ids = pa.array([f"series-{i}" for i in range(20000)])
    chosen = validated(ids, 0.1)
    assert chosen.mean() == pytest.approx(0.1, abs=0.01)
    in_blocks = np.concatenate([validated(ids.slice(i, 999), 0.1) for i in range(0, 20000, 999)])
    np.testing.assert_array_equal(in_blocks, chosen)  # the same series, however the shard is cut
    assert validated(pa.chunked_array([ids]), 1.0).all() and not validated(ids, 0.0).any()
    assert (chosen <= validated(ids, 0.2)).all()  # a larger share keeps the smaller one's series


def test_a_fractional_rate_gives_that_many_windows_on_average():
    from forecaster.features import windows_of_each

    counts = windows_of_each(20000, 2.25, np.random.default_rng(0))
    assert set(np.unique(counts)) == {2, 3} and counts.mean() == pytest.approx(2.25, abs=0.02)
    assert windows_of_each(5, 4.0, np.random.default_rng(0)) == 4  # whole: no draw, the stream stays as it was
    block = _block(*[np.arange(40.0) + i for i in range(50)])
    drawn, plain = np.random.default_rng(1), np.random.default_rng(1)
    whole = training_windows(block, _spec(8, 4), windows_of_each(len(block), 4.0, drawn), drawn)
    same = training_windows(block, _spec(8, 4), 4, plain)
    np.testing.assert_array_equal(whole.inputs, same.inputs)
    rng = np.random.default_rng(1)
    few = training_windows(block, _spec(8, 4), windows_of_each(len(block), 0.5, rng), rng)
    assert 10 < len(few) < 40


def test_never_negative_looks_only_before_each_end():
    block = _block([3.0, 0.0, 2.0, -1.0], [-2.0, 5.0], [1.0])
    np.testing.assert_array_equal(block.never_negative(np.array([4, 2, 1])), [False, False, True])
    np.testing.assert_array_equal(block.never_negative(np.array([3, 0, 1])), [True, True, True])
