"""Ray Train behaviour: DDP really splits the data and keeps replicas identical; warm start."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from forecaster.checkpoint import check_resumable, warm_start_checkpoint
from forecaster.config import ConfigError, load_config
from forecaster.pipeline import clean_series, run, validate_series
from forecaster.read import read_series
from forecaster.spec import ModelSpec
from forecaster.synthetic import seasonal_series
from forecaster.theta import STATISTICAL
from forecaster.train import fit, validated
from tests.specs import job_config

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    import pyarrow.parquet as pq

    root = tmp_path_factory.mktemp("train-input")
    table = seasonal_series(40, 60, seed=11, noise=0.05)
    ids = table["unique_id"].to_pylist()
    for part in range(4):  # several blocks, so each rank's shard is a real split
        keep = pc.is_in(table["unique_id"], value_set=pc.unique(table["unique_id"]).filter(
            [i % 4 == part for i in range(len(set(ids)))]))
        pq.write_table(table.filter(keep), root / f"part-{part}.parquet")
    return root


def _cfg(data, out, *extra):
    """A small training's config; no HTML report (2-3 s a run here: tests/test_report.py and the pipeline
    tests cover it)."""
    return job_config(data, out, "2024-01-01", 6, "model.hidden_size=16", "train.windows_per_series=16",
                      "train.batch_size=64", "train.seed=3", "report.enabled=false", *extra)


def _clean(cfg):
    return clean_series(validate_series(cfg, read_series(cfg)))


def test_ddp_ranks_get_disjoint_shards_keep_identical_parameters_and_match_one_worker(ray_session, data_dir,
                                                                                      tmp_path):
    """40 series on 2 ranks: disjoint shards of 20, identical parameters after the all-reduced steps,
    validation on train.max_validation_series of them (the same subset on both ranks), and about the
    validation loss of one worker."""
    results = {}
    for workers in (1, 2):
        cfg = _cfg(data_dir, tmp_path / str(workers), f"train.num_workers={workers}", "train.max_epochs=6",
                   "train.refit_epochs=0", "train.patience=10", "train.diagnostics=true", f"run.name=w{workers}",
                   "train.max_validation_series=10")
        clean = _clean(cfg)
        results[workers] = fit(cfg, clean).metrics
    metrics = results[2]
    assert metrics["shard_overlap"] == 0
    assert metrics["shard_sizes"] == [20, 20] and results[1]["shard_sizes"] == [40]
    first, second = metrics["param_checksums"]
    assert first == pytest.approx(second, rel=1e-9, abs=1e-9)  # all-reduced gradients, same steps
    ids = pa.array(sorted(clean.to_pandas()["unique_id"]))
    assert metrics["val_series"] == results[1]["val_series"] == int(validated(ids, 10 / 40).sum())
    assert 0 < metrics["val_series"] < 40
    assert metrics["best_val_loss"] == pytest.approx(results[1]["best_val_loss"], rel=0.15)


def test_warm_start_begins_at_the_earlier_validation_loss(ray_session, data_dir, tmp_path):
    """train.warm_start=latest finds the first run's checkpoint through its manifest (a whole run); the
    warm start itself needs only training."""
    # no refit: the warm start reads the best epoch's weights, whose validation loss the first run recorded
    common = ["train.num_workers=1", "train.patience=10", "train.refit_epochs=0"]
    first = run(_cfg(data_dir, tmp_path, *common, "train.max_epochs=5", "run.date=2024-01-01"))
    cfg = _cfg(data_dir, tmp_path, *common, "train.warm_start=latest", "train.warm_epochs=2", "run.date=2024-02-01")
    warm = fit(cfg, _clean(cfg)).metrics
    earlier_best = first["metrics"]["best_val_loss"]
    assert first["metrics"]["warm_started"] is False and warm["warm_started"] is True
    assert warm["epoch"] + 1 == 2
    assert warm["initial_val_loss"] == pytest.approx(earlier_best, rel=0.05)
    # a cold start (the first run) began at the untrained model's loss, far from where the warm start began
    untrained = first["metrics"]["initial_val_loss"]
    assert untrained - earlier_best > 10 * abs(warm["initial_val_loss"] - earlier_best)


def test_warm_start_from_a_different_architecture_is_refused(data_dir, tmp_path):
    """Only the checkpoint's format matters here: an untrained one, written as rank 0 writes them."""
    import torch

    from forecaster import checkpoint
    from forecaster.model import build_model

    saved = ModelSpec.from_config(_cfg(data_dir, tmp_path))
    checkpoint.save(str(tmp_path), build_model(saved).eval(), saved, optimizer=None)
    other = _cfg(data_dir, tmp_path, "model.hidden_size=8", f"train.warm_start={tmp_path}", "run.date=2024-03-01")
    with pytest.raises(ConfigError, match="train.warm_start=.*hidden_size=16, this run has 8"):
        warm_start_checkpoint(other, ModelSpec.from_config(other))
    assert torch.load(tmp_path / "model.pt", weights_only=True)["epoch"] == -1  # the untrained state


def _saved_spec(tmp_path, model: dict) -> None:
    saved = tmp_path / "nightly-2024-01-01" / "checkpoint_2024-01-01_00-00-00.000000"
    saved.mkdir(parents=True)
    (saved / "config.json").write_text(json.dumps({"model": model}))


def test_a_retried_date_with_another_architecture_stops_before_training(tmp_path):
    """Ray Train resumes a run of the same name; a checkpoint of another shape must not reach the workers."""
    from forecaster.storage import resolve

    spec = ModelSpec.from_config(load_config(None, ["model.hidden_size=16"]))
    storage = resolve(str(tmp_path))
    check_resumable(storage, "nightly-2024-01-01", spec)  # no such run: a fresh start
    _saved_spec(tmp_path, spec.to_dict())
    check_resumable(storage, "nightly-2024-01-01", spec)  # the same model: Ray resumes it
    other = ModelSpec.from_config(load_config(None, ["model.hidden_size=32"]))
    with pytest.raises(ConfigError) as info:
        check_resumable(storage, "nightly-2024-01-01", other)
    message = str(info.value)
    assert "nightly-2024-01-01" in message and "hidden_size=16" in message and "run.name" in message


# the `model` of config.json as the first checkpoints wrote it (2461a21): no quantiles, levels, scaler_type,
# ensemble_size, skip or features
FIRST_FORMAT = {"horizon": 6, "input_size": 12, "hidden_size": 64, "num_layers": 2, "dropout": 0.1, "loss": "mae",
                "scaler": "window", "season": 12}


def test_a_checkpoint_of_the_first_format_reads_as_the_model_it_was(tmp_path):
    """The one place that fills what older checkpoints lack (ModelSpec.LEGACY): their networks had no skip,
    no covariates, one output, and scaled windows robustly; resuming one with today's default skip=linear
    is refused, with the old settings it is allowed."""
    from forecaster.covariates import FeatureSpec
    from forecaster.storage import resolve

    old = ModelSpec.from_dict(FIRST_FORMAT)
    assert (old.skip, old.scaler_type, old.quantiles, old.levels, old.ensemble_size) == ("none", "robust", (0.5,), (),
                                                                                         1)
    assert old.features == FeatureSpec()
    _saved_spec(tmp_path, FIRST_FORMAT)
    storage = resolve(str(tmp_path))
    same = load_config(None, ["model.horizon=6", "model.input_size=12", "model.skip=none", "model.calendar=none"])
    check_resumable(storage, "nightly-2024-01-01", ModelSpec.from_config(same))
    with pytest.raises(ConfigError, match="skip=none, this run has linear"):
        check_resumable(storage, "nightly-2024-01-01", ModelSpec.from_config(
            load_config(None, ["model.horizon=6", "model.input_size=12", "model.calendar=none"])))


def test_a_saved_spec_lacking_a_key_of_the_first_format_is_refused():
    with pytest.raises(ValueError, match="lacks hidden_size"):
        ModelSpec.from_dict({k: v for k, v in FIRST_FORMAT.items() if k != "hidden_size"})


class _Shard:
    """A Ray Data shard's iter_batches over one pyarrow table, for the loop's functions without Ray."""

    def __init__(self, table):
        self.table, self.passes = table, 0

    def iter_batches(self, batch_size, batch_format):
        self.passes += 1
        for start in range(0, self.table.num_rows, batch_size):
            yield self.table.slice(start, batch_size)


@pytest.mark.parametrize("combine,weight", [("fitted", 0.0), ("theta", 0.5), ("none", 1.0)])
def test_validation_chooses_the_lstms_weight_by_mase(combine, weight):
    """Straight lines: Theta (drift) is far closer on the held-out points than an untrained network,
    so model.combine=fitted gives the LSTM no weight, and `forecast`'s scores and calibration are
    those of the weighted forecast; fixed methods keep their weight."""
    import dataclasses

    import torch

    from forecaster.model import build_model
    from forecaster.spec import LoopSettings
    from forecaster.train import ValidationRows, _holdout_pass
    from tests.specs import SMALL, model_spec
    from tests.test_predict import _batch

    cfg = load_config(None, [*SMALL, "model.horizon=4", "data.freq=MS", f"model.combine={combine}",
                             "model.statistical=theta"])
    spec = model_spec(*SMALL, "model.horizon=4", "data.freq=MS")
    settings = dataclasses.replace(LoopSettings.from_config(cfg, 6), series_per_block=4)  # two blocks
    torch.manual_seed(0)
    rows = _batch({f"line{i}": 10.0 * i + (1 + i) * np.arange(30.0) for i in range(6)})
    holdout = _holdout_pass(build_model(spec), ValidationRows(_Shard(rows), settings), spec, settings,
                            torch.device("cpu"))
    assert holdout.weight == weight and holdout.scores["series"] == 6
    if combine == "fitted":
        assert holdout.scores["mase_forecast"] == pytest.approx(holdout.scores["mase_theta"])
        assert holdout.scores["mase_forecast"] < holdout.scores["mase_lstm"]
    if combine == "none":
        assert holdout.scores["mase_forecast"] == pytest.approx(holdout.scores["mase_lstm"])
    assert holdout.calibration is not None and len(holdout.calibration["quantiles"][0]) == 4
    # train.max_validation_series: only the validated share of the series is scored
    half = dataclasses.replace(settings, validation_share=0.5)
    subset = _holdout_pass(build_model(spec), ValidationRows(_Shard(rows), half), spec, half, torch.device("cpu"))
    assert subset.scores["series"] == int(validated(rows["unique_id"], 0.5).sum()) < 6


def test_validation_scores_forecast_with_the_partner_of_model_statistical():
    """model.statistical=theta_damped: with the LSTM's weight 0 (fitted, on straight lines) `forecast`'s
    validation MASE is that of the mean of Theta and DampedTrend from the points before the held-out
    ones, not Theta's."""
    import dataclasses

    import torch

    from forecaster.evaluate import holdout_actual, mase, mase_scale
    from forecaster.features import SeriesBlock
    from forecaster.model import build_model
    from forecaster.spec import LoopSettings
    from forecaster.theta import partner, statistical
    from forecaster.train import ValidationRows, _holdout_pass
    from tests.specs import SMALL, model_spec
    from tests.test_predict import _batch

    cfg = load_config(None, [*SMALL, "model.horizon=4", "data.freq=MS", "model.combine=fitted",
                             "model.statistical=theta_damped"])
    spec = model_spec(*SMALL, "model.horizon=4", "data.freq=MS")
    settings = dataclasses.replace(LoopSettings.from_config(cfg, 6), series_per_block=4)
    torch.manual_seed(0)
    rows = _batch({f"line{i}": 10.0 * i + (1 + i) * np.arange(30.0) + np.sin(np.arange(30.0)) for i in range(6)})
    holdout = _holdout_pass(build_model(spec), ValidationRows(_Shard(rows), settings), spec, settings,
                            torch.device("cpu"))
    block = SeriesBlock.from_batch(rows)
    cutoffs = block.lengths - 4
    methods, actual = statistical(block, cutoffs, 4, 12), holdout_actual(block, 4)
    scale = mase_scale(block, cutoffs, 12)
    assert holdout.weight == 0.0
    assert holdout.scores["mase_forecast"] == pytest.approx(mase(actual, partner(methods, "theta_damped"),
                                                                 scale).mean())
    assert holdout.scores["mase_forecast"] != pytest.approx(holdout.scores["mase_theta"])
    # each member of the partner is scored too (the report's validation table, the console's summary)
    assert holdout.scores["mase_damped_trend"] == pytest.approx(mase(actual, methods["DampedTrend"], scale).mean())


@pytest.mark.parametrize("trend", ["carried on", "came and went"])
def test_model_statistical_auto_chooses_the_partner_once_on_every_validated_series(monkeypatch, trend):
    """model.statistical=auto: the first validation pass chooses the partner from the candidates' errors
    on the last 3 horizons of all its series (theta.partner_errors over the blocks, summed), scores
    `forecast` with it, and later passes keep that choice without computing the errors again. Lines
    whose trend carries on choose the damped trend; series whose moves reverse choose SES."""
    import dataclasses

    import torch

    from forecaster import train
    from forecaster.evaluate import holdout_actual, mase, mase_scale
    from forecaster.features import SeriesBlock
    from forecaster.model import build_model
    from forecaster.spec import LoopSettings
    from forecaster.theta import chosen_partner, partner, partner_errors, statistical
    from forecaster.train import ValidationRows, _holdout_pass
    from tests.specs import SMALL, model_spec
    from tests.test_predict import _batch

    calls = []
    real = train.partner_errors
    monkeypatch.setattr(train, "partner_errors", lambda *a, **k: calls.append(len(a[0])) or real(*a, **k))
    cfg = load_config(None, [*SMALL, "model.horizon=4", "data.freq=YS", "model.combine=fitted"])
    assert cfg.model.statistical == "auto"  # the default
    spec = model_spec(*SMALL, "model.horizon=4", "data.freq=YS")
    settings = dataclasses.replace(LoopSettings.from_config(cfg, 6), series_per_block=4)  # two blocks
    rng = np.random.default_rng(2)
    t = np.arange(40.0)
    if trend == "carried on":
        values = {f"s{i}": 10.0 * i + (1 + i) * t + rng.normal(0, 0.3, 40) for i in range(6)}
    else:  # up for 4 years, down for 4: a trend that never lasts past a horizon
        values = {f"s{i}": 50.0 + 5 * np.abs((t + i) % 8 - 4) + rng.normal(0, 0.3, 40) for i in range(6)}
    batch = _batch(values)
    block = SeriesBlock.from_batch(batch)
    expected = chosen_partner(partner_errors(block, 4, 1))
    assert expected == ("otm_damped" if trend == "carried on" else "theta_ses")
    rows = ValidationRows(_Shard(batch), settings)
    torch.manual_seed(0)
    model = build_model(spec)
    first, second = (_holdout_pass(model, rows, spec, settings, torch.device("cpu")) for _ in range(2))
    assert calls == [4, 2]  # each block once, in the first pass
    assert first.choice == second.choice and first.choice["chosen"] == expected
    assert first.choice["series"] == 6 and first.choice["pairs"] == 18 and first.choice["windows"] == 3
    errors = partner_errors(block, 4, 1)
    assert first.choice["mase"]["theta_ses"] == pytest.approx(errors[1, 0] / errors[1, 1])
    # forecast is scored with the chosen partner: on the lines the fitted weight is 0 against an untrained
    # network (on the zigzags the network, flat, is the better of the two there, and gets it all)
    cutoffs = block.lengths - 4
    chosen = partner(statistical(block, cutoffs, 4, 1), expected)
    if trend == "carried on":
        assert first.weight == 0.0
        assert first.scores["mase_forecast"] == pytest.approx(
            mase(holdout_actual(block, 4), chosen, mase_scale(block, cutoffs, 1)).mean())


def test_validation_computes_the_statistical_forecasts_once_and_scores_the_same_every_pass(monkeypatch):
    """The partner, scales, actuals and baseline scores of each validated block do not change between
    epochs: the first pass computes them (ValidationRows.baselines), later passes reuse them and score
    exactly as the first did."""
    import dataclasses

    import torch

    from forecaster import train
    from forecaster.model import build_model
    from forecaster.spec import LoopSettings
    from forecaster.train import ValidationRows, _holdout_pass
    from tests.specs import SMALL, model_spec
    from tests.test_predict import _batch

    calls = []
    real = train.statistical
    monkeypatch.setattr(train, "statistical", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    cfg = load_config(None, [*SMALL, "model.horizon=4", "data.freq=MS"])
    spec = model_spec(*SMALL, "model.horizon=4", "data.freq=MS")
    settings = dataclasses.replace(LoopSettings.from_config(cfg, 6), series_per_block=4)
    rng = np.random.default_rng(1)
    rows = ValidationRows(_Shard(_batch({f"s{i}": 50 + rng.normal(size=30).cumsum() for i in range(6)})), settings)
    torch.manual_seed(0)
    model = build_model(spec)
    first, second = (_holdout_pass(model, rows, spec, settings, torch.device("cpu")) for _ in range(2))
    assert calls == [4, 2] and len(rows.baselines) == 2  # two blocks, each computed in the first pass only
    assert first.scores == second.scores and first.loss == second.loss
    assert first.calibration == second.calibration


def test_validation_scores_and_calibrates_forecast_floored_at_zero_as_it_is_written():
    """model.nonnegative=auto: series falling to zero and staying there, whose Theta drifts below zero: the
    validation pass scores (and calibrates the intervals on) `forecast` floored at zero, as the predictor
    writes it; the models' own scores are the same either way."""
    import dataclasses

    import torch

    from forecaster.model import build_model
    from forecaster.spec import LoopSettings
    from forecaster.train import ValidationRows, _holdout_pass
    from tests.specs import SMALL, model_spec
    from tests.test_predict import _batch

    spec = model_spec(*SMALL, "model.horizon=4", "data.freq=MS")
    rows = _batch({f"fall{i}": np.maximum(40.0 - (2 + i) * np.arange(30.0), 0.0) for i in range(4)})
    holdouts = {}
    for rule in ("auto", "none"):
        cfg = load_config(None, [*SMALL, "model.horizon=4", "data.freq=MS", f"model.nonnegative={rule}"])
        settings = dataclasses.replace(LoopSettings.from_config(cfg, 4), series_per_block=2)
        torch.manual_seed(0)
        holdouts[rule] = _holdout_pass(build_model(spec), ValidationRows(_Shard(rows), settings), spec, settings,
                                       torch.device("cpu"))
    auto, plain = holdouts["auto"], holdouts["none"]
    assert auto.scores["mase_theta"] == plain.scores["mase_theta"]
    assert auto.scores["mase_lstm"] == plain.scores["mase_lstm"]
    assert auto.scores["mase_forecast"] < plain.scores["mase_forecast"]
    assert (np.asarray(auto.calibration["quantiles"]) <= np.asarray(plain.calibration["quantiles"])).all()
    assert auto.calibration["unit"] == "spread"  # model.interval_unit's default, kept for the predictor


def test_validation_calibrates_the_short_series_on_the_chosen_partners_errors_from_cut_histories(monkeypatch):
    """The calibration's `short` part: each length group's quantiles of the partner auto chose, from the
    errors of every block's series cut short (intervals.short_histograms, summed over blocks); made once,
    after the first pass, and kept for the passes after it."""
    import dataclasses

    import torch

    from forecaster import intervals
    from forecaster.features import SeriesBlock
    from forecaster.model import build_model
    from forecaster.spec import LoopSettings
    from forecaster.theta import CANDIDATES
    from forecaster.train import ValidationRows, _holdout_pass
    from tests.specs import SMALL, model_spec
    from tests.test_predict import _batch

    rng = np.random.default_rng(6)
    # 24 series: every group gets the 19 errors per step its 95 % quantile needs (intervals.enough)
    series = {f"s{i}": 50 + np.cumsum(rng.normal(0.3 * (i % 3), 2, 24 + i)) for i in range(24)}
    spec = model_spec(*SMALL, "model.horizon=4", "data.freq=MS")
    cfg = load_config(None, [*SMALL, "model.horizon=4", "data.freq=MS"])  # model.statistical=auto
    settings = dataclasses.replace(LoopSettings.from_config(cfg, 24), series_per_block=16)  # two blocks
    calls = []
    made = intervals.short_histograms
    monkeypatch.setattr(intervals, "short_histograms", lambda *a: calls.append(a[3]) or made(*a))
    rows = ValidationRows(_Shard(_batch(series)), settings)
    torch.manual_seed(0)
    model = build_model(spec)
    first = _holdout_pass(model, rows, spec, settings, torch.device("cpu"))
    second = _holdout_pass(model, rows, spec, settings, torch.device("cpu"))
    chosen = first.choice["chosen"]
    assert calls == [chosen, chosen]  # one per block, once
    block = SeriesBlock(list(series.values()))

    def record(method):
        counts = sum(made(block.take(np.arange(24) // 16 == b), 4, spec.season, method, "spread",
                          settings.nonnegative) for b in (0, 1))
        return intervals.short_record(counts, settings.levels, 4)

    assert first.calibration["short"] == second.calibration["short"] == record(chosen)
    assert record(chosen)["edges"] == [2, 3, 4, 6] and None not in record(chosen)["quantiles"]
    other, = set(CANDIDATES) - {chosen}
    assert record(other) != record(chosen)  # the partners' errors differ: the test can tell which was kept


def test_validation_reads_its_series_from_the_shard_once_and_keeps_only_the_validated():
    import dataclasses

    from forecaster.spec import LoopSettings
    from forecaster.train import ValidationRows
    from tests.test_predict import _batch

    rows = _batch({f"s{i}": np.arange(30.0) + i for i in range(40)})
    settings = dataclasses.replace(LoopSettings.from_config(load_config(None, ["data.freq=MS"]), 40),
                                   series_per_block=8, validation_share=0.5)
    shard = _Shard(rows)
    kept = ValidationRows(shard, settings)
    first = [b["unique_id"].to_pylist() for b in kept]
    second = [b["unique_id"].to_pylist() for b in kept]
    assert first == second and shard.passes == 1
    expected = rows["unique_id"].filter(pa.array(validated(rows["unique_id"], 0.5))).to_pylist()
    assert [i for ids in first for i in ids] == expected and 0 < len(expected) < 40


def test_an_epoch_under_the_cap_builds_blocks_only_for_series_that_draw_a_window(monkeypatch):
    """train.max_windows_per_epoch: the series drawing no window this epoch are left out before their
    block is built, and the windows are the ones the whole batch's block would have given."""
    import dataclasses

    from forecaster.features import SeriesBlock, training_windows, windows_of_each
    from forecaster.spec import LoopSettings
    from forecaster.train import minibatches
    from tests.specs import SMALL, model_spec
    from tests.test_predict import _batch

    spec = model_spec(*SMALL, "model.horizon=4", "data.freq=MS")
    settings = dataclasses.replace(LoopSettings.from_config(load_config(None, [])), windows_per_series=0.3)
    rows = _batch({f"s{i}": np.arange(30.0) * (i + 1) for i in range(200)})
    built = []
    from_batch = SeriesBlock.from_batch
    monkeypatch.setattr(SeriesBlock, "from_batch", lambda batch, features: built.append(batch.num_rows) or
                        from_batch(batch, features))
    steps = list(minibatches([rows], spec, settings, np.random.default_rng(5), local_batch=10_000))
    monkeypatch.undo()
    (windows, order), = steps
    assert built == [len(windows)]  # one block, of the series that drew a window (one each under 1)
    rng = np.random.default_rng(5)  # the same draws, on the whole batch's block
    expected = training_windows(SeriesBlock.from_batch(rows, spec.features), spec, windows_of_each(200, 0.3, rng), rng,
                                recent=settings.recent_points(spec.horizon))
    assert 30 < len(windows) < 90  # about 0.3 x 200
    np.testing.assert_array_equal(windows.inputs, expected.inputs)
    np.testing.assert_array_equal(windows.targets, expected.targets)


@pytest.mark.parametrize("loss_weight", ["mase", "none"])
def test_mase_loss_weight_weighs_each_window_by_its_inverse_naive_scale(loss_weight):
    """train.loss_weight=mase: a series that moves a lot from season to season counts less in the loss,
    as its errors count less in MASE; the loss is the weighted mean of the step errors (training and
    validation read the same mask)."""
    import torch

    from forecaster.features import NAIVE_UNIT_FLOOR, naive_unit
    from forecaster.model import masked_loss
    from forecaster.spec import LoopSettings
    from forecaster.train import _to_tensors, minibatches
    from tests.specs import SMALL, model_spec
    from tests.test_predict import _batch

    spec = model_spec(*SMALL, "model.horizon=4", "model.input_size=8", "data.freq=QS")
    settings = LoopSettings.from_config(load_config(None, ["data.freq=QS", f"train.loss_weight={loss_weight}"]))
    rng = np.random.default_rng(0)
    seasonal = _batch({"seasonal": 100 + 10 * np.tile([1.0, 3, -2, -2], 10) + rng.normal(0, 0.01, 40)})
    rough = _batch({"rough": 100 + rng.normal(0, 10, 40)})
    steps = list(minibatches([seasonal, rough], spec, settings, np.random.default_rng(1), local_batch=10_000))
    (windows, order), (rough_windows, _) = steps  # a block per batch
    inputs, targets, mask = _to_tensors(windows, order, torch.device("cpu"))
    if loss_weight == "none":
        assert windows.weight is None and rough_windows.weight is None
        np.testing.assert_array_equal(mask.numpy(), windows.target_mask[order])
        return
    # seasonal naive is all but exact on the first series: its windows that hold a season's pair of points
    # get the largest weight there is (one that starts with fewer points falls back to lag 1)
    paired = (windows.input_mask[:, 4:] * windows.input_mask[:, :-4]).sum(axis=1) > 0
    assert paired.sum() > 20
    np.testing.assert_allclose(windows.weight[paired], 1 / NAIVE_UNIT_FLOOR)
    np.testing.assert_allclose(rough_windows.weight, 1 / naive_unit(rough_windows, spec.season))
    assert rough_windows.weight.max() < 2
    np.testing.assert_allclose(mask.numpy(), windows.target_mask[order] * windows.weight[order, None], rtol=1e-6)
    rough_inputs, rough_targets, rough_mask = _to_tensors(rough_windows, np.arange(len(rough_windows)),
                                                          torch.device("cpu"))
    both = torch.cat([mask, rough_mask])
    prediction = torch.zeros(len(both), spec.horizon, 1)
    weights = (np.concatenate([windows.weight[order], rough_windows.weight])[:, None]
               * np.concatenate([windows.target_mask[order], rough_windows.target_mask]))
    errors = np.abs(np.concatenate([windows.targets[order], rough_windows.targets]))
    expected = (errors * weights).sum() / weights.sum()
    loss = masked_loss(prediction, torch.cat([targets, rough_targets]), both, "mae")
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_weight_average_warms_up_then_keeps_the_decay():
    import torch

    from forecaster.train import weight_average

    assert weight_average(torch.nn.Linear(1, 1), 0.0) is None
    model = torch.nn.Linear(1, 1, bias=False)
    ema = weight_average(model, 0.5)
    expected = None
    for n, value in enumerate([4.0, 8.0, 0.0, 2.0]):
        with torch.no_grad():
            model.weight.fill_(value)
        ema.update_parameters(model)
        decay = min(0.5, (1 + n) / (10 + n))  # n: updates before this one; the first copies
        expected = value if expected is None else expected * decay + value * (1 - decay)
        assert ema.module.weight.item() == pytest.approx(expected)
    assert expected != pytest.approx(2.0)  # the average is not the last weights


def test_forecasts_use_the_moving_average_of_the_weights_after_the_refit(ray_session, data_dir, tmp_path):
    """One epoch (always the best), then two refit epochs on whole series (train.refit_epochs): the
    checkpoint's best weights are the average's at the end of the refit, not the model's and not the
    best epoch's; forecast weighs the LSTM as the best epoch's validation chose (model.combine=fitted). The
    checkpoint records the seasonality test's level its partner was validated with."""
    import os

    import torch

    from forecaster import checkpoint

    manifest = run(_cfg(data_dir, tmp_path, "train.num_workers=2", "train.max_epochs=1", "train.ema_decay=0.9",
                        "train.refit_epochs=2", "model.combine=fitted", "model.seasonality_level=0.9"))
    path = manifest["checkpoint_uri"].removeprefix("file://")
    assert checkpoint.load_best(path).seasonality_level == 0.9
    saved = torch.load(os.path.join(path, "model.pt"), map_location="cpu", weights_only=True)
    averaged = {k.removeprefix("module."): v for k, v in saved["ema"].items() if k.startswith("module.")}
    assert averaged.keys() == saved["model"].keys() == saved["best_model"].keys()
    assert int(saved["ema"]["n_averaged"]) > 1
    assert all(torch.equal(saved["best_model"][k], averaged[k]) for k in averaged)
    assert not all(torch.equal(saved["model"][k], averaged[k]) for k in averaged)
    metrics = manifest["metrics"]
    assert saved["refit_done"] == metrics["refit_epochs"] == 2 and metrics["epochs"] == 3
    assert metrics["best_epoch"] == 0 and metrics["best_val_loss"] == metrics["history"][0]["val_loss"]
    assert [h["val_loss"] is None for h in metrics["history"]] == [False, True, True]
    # model.combine=fitted: the weight validation chose (both ranks' series) makes every forecast
    weight = metrics["combine_weight"]
    assert saved["combine_weight"] == weight and weight in [i / 10 for i in range(11)]
    forecasts = pd.read_parquet(tmp_path / "forecasts")
    # model.statistical=auto: the partner validation chose, kept in the checkpoint
    chosen = metrics["statistical"]["chosen"]
    assert saved["statistical"] == metrics["statistical"] and chosen in ("otm_damped", "theta_ses")
    partner = sum(forecasts[member] for member in STATISTICAL[chosen]) / 2
    np.testing.assert_allclose(forecasts.forecast, weight * forecasts.LSTM + (1 - weight) * partner)
