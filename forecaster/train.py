"""Train: the Ray Train (DDP) loop over series shards, early stopping and checkpoints.

Each worker reads its shard of series rows with `get_dataset_shard("train")`, cuts random windows
from a block of series at a time (never all windows at once), and steps the DDP model. After each
epoch every worker scores the validation windows of its shard (the last `horizon` points of each
series; beyond train.max_validation_series series, of a fixed subset); the sums are all-reduced so
that every rank sees the same validation loss and takes the same early-stopping decision. With
train.refit_epochs the best weights then go on training on whole series. Rank 0 writes the
checkpoint (current and best weights, optimiser, early-stopping state, config); every rank calls
`report`.

An epoch's cost is bounded whatever the series count: train.max_windows_per_epoch training
windows and train.max_validation_series validation windows at most (forecaster.spec).
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from torch.optim.swa_utils import AveragedModel

from forecaster import checkpoint, intervals
from forecaster.checkpoint import TrainingState
from forecaster.columns import DAMPED, FORECAST, ID, LSTM, NAIVE, OPTIMIZED_THETA, SEASONAL_NAIVE, SES, THETA
from forecaster.config import Config
from forecaster.covariates import feature_spec
from forecaster.evaluate import holdout_actual, mase, mase_scale, named_scores, validation_scores
from forecaster.features import SeriesBlock, Windows, naive_unit, training_windows, validation_windows, windows_of_each
from forecaster.model import autocast_bf16, build_model, masked_loss, member_mean, per_step_loss
from forecaster.runtime import fault_hook_env
from forecaster.spec import LoopSettings, ModelSpec
from forecaster.storage import resolve
from forecaster.theta import (
    AUTO,
    CANDIDATES,
    CHOICE_WINDOWS,
    chosen_partner,
    combine_weights,
    floor_series,
    floored,
    network_forecast,
    partner,
    partner_errors,
    statistical,
)

log = logging.getLogger(__name__)

FAULT_ENV = "FORECASTER_TEST_KILL_RANK"  # test-only fault hook, see _maybe_fail


def _batches(shard, settings: LoopSettings) -> Iterator[pa.Table]:
    """This rank's shard of series rows, train.series_per_block series at a time."""
    return shard.iter_batches(batch_size=settings.series_per_block, batch_format="pyarrow")


class ValidationRows:
    """This rank's validated series rows (all, or the `validated` share beyond train.max_validation_series),
    train.series_per_block series at a time. The first pass reads them from the shard and keeps them, so
    later passes do not stream the whole shard again to find them: at most train.max_validation_series
    series are kept over all ranks, as Arrow rows. `baselines` keeps, block by block, what the
    validation pass scores against that no epoch changes (_Baselines), from the first pass on, and
    `short` the short series' calibration (_short), made once, at the end of the first pass."""

    def __init__(self, shard, settings: LoopSettings):
        self.shard, self.settings, self.kept = shard, settings, None
        self.baselines: list[_Baselines] = []
        self.choice: dict | None = None  # model.statistical=auto's choice (_choice), from the first pass on
        self.short: dict | None = None  # intervals.short_record of the partner, over every rank

    @property
    def partner(self) -> str | None:
        """The partner validation scores `forecast` with: model.statistical, or auto's choice (None until the
        first pass has made it)."""
        if self.settings.statistical != AUTO:
            return self.settings.statistical
        return self.choice["chosen"] if self.choice else None

    def __iter__(self) -> Iterator[pa.Table]:
        if self.kept is not None:
            yield from self.kept
            return
        # a pass that streams the shard again starts them again
        self.baselines, self.choice, self.short = [], None, None
        kept, share = [], self.settings.validation_share
        for batch in _batches(self.shard, self.settings):
            if share < 1:
                batch = batch.filter(pa.array(validated(batch[ID], share)))
            if batch.num_rows:
                kept.append(batch)
                yield batch
        self.kept = kept


def _to_tensors(windows: Windows, rows: np.ndarray, device) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """(model inputs, targets, target mask) of windows `rows` on `device`; the mask carries the windows'
    loss weights (train.loss_weight), so that every loss is the weighted mean over observed steps."""
    inputs = {k: torch.from_numpy(v).to(device) for k, v in windows.model_inputs(rows).items()}
    targets = torch.from_numpy(windows.targets[rows].astype(np.float32))
    mask = windows.target_mask[rows]
    if windows.weight is not None:
        mask = mask * windows.weight[rows, None]
    return inputs, targets.to(device), torch.from_numpy(mask.astype(np.float32)).to(device)


def weighed(windows: Windows, spec: ModelSpec, settings: LoopSettings) -> Windows:
    """`windows` with their loss weights for train.loss_weight: mase divides each window's errors by its
    input's mean absolute seasonal difference (features.naive_unit), so that a window counts in the loss
    as its errors count in MASE, the score the forecasts are judged by; none leaves them equal."""
    if settings.loss_weight == "mase":
        windows.weight = 1.0 / naive_unit(windows, spec.season)
    return windows


def _all_ranks(flag: bool, device) -> bool:
    """True only if every rank says True (keeps DDP ranks stepping in lockstep)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def _all_sum(values: list[float], device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def minibatches(batches: Iterable[pa.Table], spec: ModelSpec, settings: LoopSettings, rng: np.random.Generator,
                local_batch: int, whole: bool = False) -> Iterator[tuple[Windows, np.ndarray]]:
    """(windows, rows of one step) from random training windows of each batch of series rows in turn,
    shuffled (`whole`: from whole series, features.training_windows). Under train.max_windows_per_epoch
    (a fraction of a window per series) the series that draw no window this epoch are left out before
    their block is built; the windows are the same as if they were not."""
    for batch in batches:
        counts = windows_of_each(batch.num_rows, settings.windows_per_series, rng)
        if not isinstance(counts, int):
            drawn = counts > 0
            if not drawn.any():
                continue
            batch, counts = batch.filter(pa.array(drawn)), counts[drawn]
        block = SeriesBlock.from_batch(batch, spec.features)
        windows = weighed(training_windows(block, spec, counts, rng, whole, settings.recent_points(spec.horizon)),
                          spec, settings)
        order = rng.permutation(len(windows))
        for i in range(0, len(order), local_batch):
            yield windows, order[i:i + local_batch]


def train_step(model, optimizer, windows: Windows, rows: np.ndarray, spec: ModelSpec, device,
               precision: str) -> float:
    """One optimiser step on windows `rows`; returns the loss.

    precision="bf16" runs the forward pass under bfloat16 autocast (cuDNN LSTM on GPUs) where the device
    has bf16 units and runs the LSTM in it (model.autocast_bf16; fp32 elsewhere, with one warning where
    the LSTM fails); the loss and the optimiser stay in float32 (bf16 needs no loss scaling).
    """
    inputs, targets, mask = _to_tensors(windows, rows, device)
    optimizer.zero_grad(set_to_none=True)
    bf16 = autocast_bf16(precision, device.type)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        prediction = model(**inputs)
    loss = masked_loss(prediction.float(), targets, mask, spec.loss, spec.quantiles)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of `model`'s weights (None for decay 0), updated after every
    optimiser step. The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so that
    the first steps from the random initial weights are soon forgotten."""
    if decay <= 0:
        return None

    def ema(averaged: list[torch.Tensor], current: list[torch.Tensor], n: torch.Tensor | int) -> None:
        n = float(n)  # one host sync per step, for all parameters
        d = min(decay, (1.0 + n) / (10.0 + n))
        torch._foreach_lerp_(averaged, current, 1.0 - d)  # averaged = d * averaged + (1 - d) * current

    return AveragedModel(model, multi_avg_fn=ema)


def train_epoch(model, optimizer, batches: Iterator[tuple[Windows, np.ndarray]], spec: ModelSpec,
                settings: LoopSettings, device, ema=None) -> tuple[float, int]:
    """(mean loss, windows stepped on) of one pass over `batches` (see minibatches). Under DDP every
    rank steps until the first rank runs out, so that all take the same number of steps."""
    model.train()
    loss_sum, steps, seen = 0.0, 0, 0
    while True:
        item = next(batches, None)
        if not _all_ranks(item is not None, device):
            break
        windows, rows = item
        loss_sum += train_step(model, optimizer, windows, rows, spec, device, settings.precision)
        if ema is not None:
            ema.update_parameters(model)  # a DDP wrapper yields its module's parameters, in order
        steps += 1
        seen += len(rows)
    return loss_sum / max(steps, 1), seen


# validation scores (means over series): mase_<name>, smape_<name> of the network forecast (the LSTM
# or its combination, model.combine), the LSTM, Theta, DampedTrend, SES, the optimised Theta and the (seasonal)
# naive baselines
VALIDATED_COLUMNS = {"forecast": FORECAST, "lstm": LSTM, "theta": THETA, "damped_trend": DAMPED, "ses": SES,
                     "optimized_theta": OPTIMIZED_THETA, "seasonal_naive": SEASONAL_NAIVE,
                     "naive": NAIVE}  # score name -> the output column it scores
SCORES = tuple(f"{metric}_{name}" for name in VALIDATED_COLUMNS for metric in ("mase", "smape"))


@dataclass
class Holdout:
    """One validation pass (_holdout_pass)."""

    loss: float  # the network's own loss: early stopping
    scores: dict  # SCORES' means over series, and `series`
    worst: list
    calibration: dict | None
    weight: float  # the LSTM's weight in `forecast`
    choice: dict | None  # model.statistical=auto's choice (_choice); None for a configured partner


def validated(ids: pa.ChunkedArray | pa.Array, share: float) -> np.ndarray:
    """Which of these series validation scores when it takes `share` of them: the same ones every epoch, on
    every rank and in every run (a CRC-32 of the id below share x 2**32), whatever block they come in."""
    hashes = np.fromiter((zlib.crc32(str(i).encode()) for i in ids.to_pylist()), dtype=np.uint64, count=len(ids))
    return hashes < share * 2.0 ** 32


class _ForecastTally:
    """The validation pass's sums for `forecast` = weight x LSTM + (1 - weight) x its statistical partner
    (model.statistical; floored at zero on the `floor` series, model.nonnegative), block by block:
    (sum, count) per score of SCORES, the scaled-error histogram (intervals) and the worst series."""

    def __init__(self, horizon: int, worst_series: int, unit: str):
        self.unit = unit  # model.interval_unit
        self.sums = np.zeros(2 * len(SCORES))
        self.errors = np.zeros((horizon, intervals.BINS))
        self.keep = worst_series
        self.worst: list[tuple[float, str, float, float]] = []

    def add(self, weight: float, ids, lstm, fixed: _Baselines, chosen: str, scores: dict) -> None:
        """One block: its ids, the LSTM's forecast, its baselines (`fixed`), the partner `chosen` (a
        model.statistical value) and the block's per-series scores so far (the forecast's are added)."""
        actual, scale, floor = fixed.actual, fixed.scale, fixed.floor
        forecast = floored(network_forecast(lstm, partner(fixed.methods, chosen), weight), floor)
        scores.update(named_scores(actual, {"forecast": forecast}, scale))
        unit = intervals.units(scale, intervals.members(fixed.methods, lstm), self.unit)
        self.errors += intervals.error_histogram(actual, forecast, unit)
        for i, name in enumerate(SCORES):
            defined = np.isfinite(scores[name])
            self.sums[2 * i] += scores[name][defined].sum()
            self.sums[2 * i + 1] += defined.sum()
        if self.keep:
            gap = scores["mase_forecast"] - scores["mase_seasonal_naive"]
            names = ids.to_pylist()
            self.worst = sorted(self.worst + [(float(gap[i]), names[i], float(scores["mase_forecast"][i]),
                                               float(scores["mase_seasonal_naive"][i]))
                                              for i in np.flatnonzero(np.isfinite(gap))], reverse=True)[:self.keep]


@dataclass
class _Baselines:
    """One validated block's statistical forecasts (every method: the partners are their means, and with
    the LSTM's they make the intervals' spread), MASE scales, held-out actuals, floored series
    (model.nonnegative), the baselines' scores and, for auto, the candidates' errors it chooses by: the
    same at every epoch."""

    methods: dict  # theta.statistical: output column -> (series, horizon) forecast
    scale: np.ndarray
    actual: np.ndarray
    floor: np.ndarray | None
    scores: dict  # mase_/smape_ of theta, damped_trend, ses, optimized_theta, seasonal_naive, naive per series
    errors: np.ndarray | None  # auto: theta.partner_errors of the block (candidates, 2); else None


def _baselines(block: SeriesBlock, spec: ModelSpec, settings: LoopSettings) -> _Baselines:
    """Every statistical method, whatever the partner: validation scores each, as the output has each."""
    h, cutoffs = spec.horizon, block.lengths - spec.horizon
    methods = statistical(block, cutoffs, h, spec.season, level=settings.seasonality_level)
    scale = mase_scale(block, cutoffs, spec.season)  # for the scores and the intervals
    actual = holdout_actual(block, h)
    auto = settings.statistical == AUTO
    return _Baselines(methods, scale, actual, floor_series(block, cutoffs, settings.nonnegative),
                      validation_scores(block, {name: methods[column] for name, column in VALIDATED_COLUMNS.items()
                                                if column in methods}, h, spec.season, scale),
                      # auto's last window is the validation window, fitted above
                      partner_errors(block, h, spec.season, last=(methods, actual, scale),
                                     level=settings.seasonality_level) if auto else None)


def _choice(rows: ValidationRows, device) -> dict:
    """model.statistical=auto's choice, the same on every rank: the candidate with the lower mean MASE
    over the last theta.CHOICE_WINDOWS horizons of every rank's validated series (theta.partner_errors,
    summed), with what it was chosen on."""
    sums = sum((b.errors for b in rows.baselines), np.zeros((len(CANDIDATES), 2)))
    series = float(sum(len(b.scale) for b in rows.baselines))
    total = np.asarray(_all_sum([*sums.reshape(-1).tolist(), series], device))
    sums = total[:-1].reshape(sums.shape)
    return {"configured": AUTO, "chosen": chosen_partner(sums), "windows": CHOICE_WINDOWS, "series": int(total[-1]),
            "pairs": int(sums[0, 1]),
            "mase": {c: float(s / n) if n else None for c, (s, n) in zip(CANDIDATES, sums.tolist(), strict=True)}}


def _short(rows: ValidationRows, spec: ModelSpec, settings: LoopSettings, device) -> dict:
    """The short series' calibration (intervals.short_record) of the partner validation scores with: its
    errors from every rank's validated series cut short (intervals.short_histograms), summed. Made once,
    after the first pass (it depends on no epoch, and auto's partner is chosen then), over the rows that
    pass kept."""
    h = spec.horizon
    counts = np.zeros((len(intervals.short_groups(h)) - 1, h, intervals.BINS))
    for batch in rows:
        counts += intervals.short_histograms(SeriesBlock.from_batch(batch), h, spec.season, rows.partner,
                                             settings.interval_unit, settings.nonnegative, settings.seasonality_level)
    counts = np.asarray(_all_sum(counts.reshape(-1).tolist(), device)).reshape(counts.shape)
    return intervals.short_record(counts, settings.levels, h)


@torch.no_grad()
def _holdout_pass(model, rows: ValidationRows, spec: ModelSpec, settings: LoopSettings, device) -> Holdout:
    """The network's loss and the scores (SCORES, and `series`: how many were validated) over the last
    `horizon` points of every series of all shards (of the `validated` ones beyond
    train.max_validation_series); the LSTM's weight in `forecast` (model.combine: fixed, or the one of
    theta.combine_weights with the lowest mean MASE over all ranks' series); the
    `settings.worst_series` series where `forecast`'s MASE exceeds seasonal naive's the most (dicts of
    unique_id and both MASEs, worst first); the interval calibration of `forecast` at settings.levels
    (forecaster.intervals, with the short series' own: _short; None without a scaled error); and
    model.statistical=auto's choice of the partner (_choice), made in the first pass and kept in `rows`.
    MASE is averaged over series where it is defined.

    A fixed weight and a known partner score each block as it comes; model.combine=fitted, and auto's
    first pass, keep the blocks' forecasts until the weight and the partner are chosen (at most
    train.max_validation_series series x horizon x 4 numbers)."""
    model.eval()
    weights = np.asarray(combine_weights(settings.combine))
    loss = np.zeros(3)  # loss total, loss count, series
    tally = _ForecastTally(spec.horizon, settings.worst_series, settings.interval_unit)
    kept = []
    for position, batch in enumerate(rows):
        block = SeriesBlock.from_batch(batch, spec.features)
        if position == len(rows.baselines):  # the first pass over this block
            rows.baselines.append(_baselines(block, spec, settings))
        fixed = rows.baselines[position]
        windows = weighed(validation_windows(block, spec), spec, settings)
        inputs, targets, mask = _to_tensors(windows, np.arange(len(windows)), device)
        prediction = member_mean(model(**inputs))  # an ensemble is scored by its mean forecast
        loss += [float((per_step_loss(prediction, targets, spec.loss, spec.quantiles) * mask).sum()),
                 float(mask.sum()), len(block)]
        # the point forecast (the median for quantile loss), in the series' units
        lstm = windows.unscale(prediction[..., 0].float().cpu().numpy().astype(np.float64))
        scores = {**fixed.scores, **named_scores(fixed.actual, {"lstm": lstm}, fixed.scale)}
        if len(weights) == 1 and rows.partner is not None:
            tally.add(float(weights[0]), batch[ID], lstm, fixed, rows.partner, scores)
        else:
            kept.append((batch[ID], lstm, fixed, scores))
    loss = _all_sum(loss.tolist(), device)
    if rows.partner is None:  # auto's first pass: one choice from every rank's series
        rows.choice = _choice(rows, device)
    if settings.levels and rows.short is None:
        rows.short = _short(rows, spec, settings, device)
    weight = float(weights[0]) if len(weights) == 1 else _fitted_weight(weights, kept, rows.partner, device)
    for ids, lstm, fixed, scores in kept:
        tally.add(weight, ids, lstm, fixed, rows.partner, scores)
    sums, errors, worst = _all_sum(tally.sums.tolist(), device), tally.errors, tally.worst
    means = {name: sums[2 * i] / sums[2 * i + 1] if sums[2 * i + 1] else None for i, name in enumerate(SCORES)}
    means["series"] = int(loss[2])
    counts = np.asarray(_all_sum(errors.reshape(-1).tolist(), device)).reshape(errors.shape)
    quantiles = intervals.quantiles(counts, settings.levels)
    calibration = intervals.record(quantiles, settings.levels, settings.interval_unit, rows.short)
    if settings.worst_series:
        worst = sorted((row for rank in _all_gather(worst) for row in rank), reverse=True)[:settings.worst_series]
    worst = [{"unique_id": uid, "mase_forecast": fc, "mase_seasonal_naive": sn} for _, uid, fc, sn in worst]
    return Holdout(loss[0] / max(loss[1], 1.0), means, worst, calibration, weight, rows.choice)


def _fitted_weight(weights: np.ndarray, kept: list, chosen: str, device) -> float:
    """model.combine=fitted: the weight of `weights` whose combination with the partner `chosen` has the
    lowest mean MASE over every rank's series where the LSTM's and Theta's are defined."""
    by_weight = np.zeros(len(weights) + 1)  # sum of the combination's MASE per weight, then how many were defined
    for _, lstm, fixed, scores in kept:
        defined = np.isfinite(scores["mase_lstm"]) & np.isfinite(scores["mase_theta"])
        for i, weight in enumerate(weights):
            forecast = floored(network_forecast(lstm, partner(fixed.methods, chosen), weight), fixed.floor)
            by_weight[i] += mase(fixed.actual, forecast, fixed.scale)[defined].sum()
        by_weight[-1] += defined.sum()
    return float(weights[np.argmin(_all_sum(by_weight.tolist(), device)[:-1])])


def _maybe_fail(epoch: int, rank: int) -> None:
    """Test-only: `FORECASTER_TEST_KILL_RANK=<rank>:<epoch>:<marker file>` kills that rank once."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    kill_rank, kill_epoch, marker = spec.split(":", 2)
    if rank == int(kill_rank) and epoch == int(kill_epoch) and not os.path.exists(marker):
        with open(marker, "w") as fh:
            fh.write("killed\n")
        os._exit(1)


def _restore(model, warm_start) -> tuple[TrainingState, dict | None]:
    """Resume from this run's last checkpoint (after a failure or a retried date), else warm-start
    from `warm_start` (an earlier run's checkpoint), else start fresh: (state, optimiser state)."""
    resumed = ray.train.get_checkpoint()
    if resumed is not None:
        with resumed.as_directory() as path:
            weights, optimizer_state, state = checkpoint.load_state(path)
        model.load_state_dict(weights)
        state.restarts += 1
        return state, optimizer_state
    state = TrainingState()
    if warm_start is not None:
        with warm_start.as_directory() as path:
            weights = checkpoint.load_best(path).weights
        model.load_state_dict(weights)
        state.warm_started = True
    return state, None


def train_loop_per_worker(config: dict) -> None:
    """Ray Train's loop: `config` holds the ModelSpec (`spec`), the LoopSettings (`settings`) and the
    warm start's checkpoint (`warm_start`, or None)."""
    spec, settings = config["spec"], config["settings"]
    torch.set_num_threads(settings.threads)
    from ray.train.v2._internal.execution import context as train_context  # its logger is named by file

    # one INFO line per report per rank from Ray Train would drown the per-epoch progress
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(settings.seed)
    device = ray.train.torch.get_device()

    model = build_model(spec)
    state, optimizer_state = _restore(model, config["warm_start"])
    model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    if optimizer_state:
        optimizer.load_state_dict(optimizer_state)
    shard = ray.train.get_dataset_shard("train")
    local_batch = max(1, settings.batch_size // world)
    plain = model.module if hasattr(model, "module") else model
    # every rank holds the same weights after each step, so every rank's average is the same
    ema = weight_average(plain, settings.ema_decay)
    if ema is not None and state.ema is not None:
        ema.load_state_dict(state.ema)
    scored = ema.module if ema is not None else plain  # what validation, early stopping and forecasts use
    max_epochs = settings.warm_epochs if state.warm_started else settings.max_epochs
    # where this attempt runs: the node of each rank (an attempt after a failure may run elsewhere)
    state.placement = [*state.placement, _all_gather(ray.get_runtime_context().get_node_id())]
    diagnostics = _shard_diagnostics(shard, settings) if settings.diagnostics else {}
    validation_rows = ValidationRows(shard, settings)
    if state.epoch < 0:  # where training begins: untrained, or the warm start's weights
        state.initial_val = _holdout_pass(scored, validation_rows, spec, settings, device).loss

    def steps(epoch: int, whole: bool = False) -> EpochSteps:
        """One pass of training steps over the shard (`whole`: windows from whole series)."""
        rng = np.random.default_rng([settings.seed, rank, epoch])
        _maybe_fail(epoch, rank)
        started = time.perf_counter()
        loss, windows = train_epoch(model, optimizer,
                                    minibatches(_batches(shard, settings), spec, settings, rng, local_batch, whole),
                                    spec, settings, device, ema)
        seconds = time.perf_counter() - started
        loss, windows = _all_sum([loss / world, float(windows)], device)
        return EpochSteps(epoch, loss, windows, seconds, started)

    worker = _Worker(plain, ema, optimizer, spec, settings, rank, diagnostics)
    for epoch in range(state.epoch + 1, max_epochs):
        if state.bad_epochs >= settings.patience:
            break
        done = steps(epoch)
        holdout = _holdout_pass(scored, validation_rows, spec, settings, device)
        val_loss = holdout.loss
        if val_loss < state.best_val:
            state.best_val, state.bad_epochs, state.best_epoch, state.worst = val_loss, 0, epoch, holdout.worst
            state.best_model = copy.deepcopy(scored.state_dict())
            state.calibration, state.combine_weight = holdout.calibration, holdout.weight
            state.statistical = holdout.choice
            state.best_scores = {f"val_{k}": v for k, v in holdout.scores.items()}
        else:
            state.bad_epochs += 1
        state.epoch = epoch
        _report(worker, state, done, val_loss)

    # train.refit_epochs: the best weights go on learning from whole series, the validation window included
    refit_epochs = settings.refit_epochs if state.best_model is not None else 0
    for step in range(state.refit_done, refit_epochs):
        if step == 0:
            _start_refit(plain, ema, state)
        epoch = state.epoch + 1 + step  # numbered after the epochs of early stopping
        done = steps(epoch, whole=True)
        state.refit_done = step + 1
        state.best_model = copy.deepcopy(scored.state_dict())  # what forecasts use: nothing is left to validate on
        _report(worker, state, done, None)


def _start_refit(plain, ema, state: TrainingState) -> None:
    """The model (and its weight average) back to the best epoch's weights, where the refit starts."""
    plain.load_state_dict(state.best_model)
    if ema is not None:
        ema.module.load_state_dict(state.best_model)


@dataclass
class EpochSteps:
    """One pass of training steps over the shard."""

    epoch: int
    loss: float  # mean over steps and ranks
    windows: float  # stepped on, all ranks
    seconds: float  # of the steps
    started: float  # perf_counter() when they began: the epoch's time runs to its report


@dataclass
class _Worker:
    """What one rank trains and reports: the model (unwrapped), its weight average, the optimiser, the
    spec and settings it runs under, its rank and its shard diagnostics (train.diagnostics)."""

    plain: torch.nn.Module
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    spec: ModelSpec
    settings: LoopSettings
    rank: int
    diagnostics: dict


def _report(worker: _Worker, state: TrainingState, done: EpochSteps, val_loss: float | None) -> None:
    """One epoch's metrics and checkpoint to Ray Train (val_loss None: a refit epoch, nothing held out)."""
    epoch, ema = done.epoch, worker.ema
    state.history = [*state.history, {"epoch": epoch, "train_loss": done.loss, "val_loss": val_loss,
                                      "seconds": time.perf_counter() - done.started}]
    state.ema = ema.state_dict() if ema is not None else None
    metrics = {
        "epoch": epoch,
        "train_loss": done.loss,
        "val_loss": val_loss,
        "best_val_loss": state.best_val,
        "windows": int(done.windows),
        "restarts": state.restarts,
        "warm_started": state.warm_started,
        "train_seconds": done.seconds,
        "epoch_seconds": time.perf_counter() - done.started,
        "history": state.history,  # every epoch so far, the resumed ones included
        "best_epoch": state.best_epoch,
        "refit_epochs": state.refit_done,
        "worst_series": state.worst,  # of the best epoch
        "placement": state.placement,  # node ids by rank, one list per attempt
        "initial_val_loss": state.initial_val,
        "calibration": state.calibration,  # of the best epoch: the intervals of `forecast`
        "combine_weight": state.combine_weight,  # of the best epoch: the LSTM's weight in `forecast`
        "statistical": state.statistical,  # model.statistical=auto's choice of the partner (None: configured)
        **state.best_scores,
    }
    if worker.diagnostics:  # evidence that DDP works, for tests and debugging (train.diagnostics)
        metrics.update(worker.diagnostics, param_checksums=_param_checksums(worker.plain))
    if worker.rank == 0:
        _progress(metrics, improved=state.bad_epochs == 0 and val_loss is not None)
    with tempfile.TemporaryDirectory() as tmp:
        saved = None
        if worker.rank == 0:
            checkpoint.save(tmp, worker.plain, worker.spec, worker.settings, worker.optimizer, state)
            saved = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=saved)


def _all_gather(value) -> list:
    """`value` of every rank, by rank (a list of one outside DDP)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def _shard_diagnostics(shard, settings: LoopSettings) -> dict:
    """How many series each rank's shard holds and how many ids two shards share (should be 0)."""
    ids = [i for b in _batches(shard, settings) for i in b[ID].to_pylist()]
    sets = [set(g) for g in _all_gather(ids)]
    overlap = sum(len(a & b) for i, a in enumerate(sets) for b in sets[i + 1:])
    return {"shard_sizes": [len(s) for s in sets], "shard_overlap": overlap}


def _param_checksums(model) -> list[float]:
    return _all_gather(float(sum(p.detach().double().sum() for p in model.parameters())))


def _progress(metrics: dict, improved: bool) -> None:
    progress = logging.getLogger("forecaster.progress")
    if not progress.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        progress.addHandler(handler)
        progress.setLevel(logging.INFO)
        progress.propagate = False
    val = "refit " if metrics["val_loss"] is None else f"{metrics['val_loss']:.4f}"
    progress.info(
        "epoch %3d  train_loss %.4f  val_loss %s  best %.4f  %d windows in %.1f s (%.0f windows/s)%s",
        metrics["epoch"], metrics["train_loss"], val, metrics["best_val_loss"],
        metrics["windows"], metrics["epoch_seconds"], metrics["windows"] / max(metrics["train_seconds"], 1e-9),
        "  *" if improved else "",
    )


def scaling(cfg: Config) -> int | tuple[int, int]:
    """ScalingConfig's num_workers: fixed, or (train.min_workers, train.num_workers) for Ray Train's
    elastic training, which starts (and restarts after a lost node) with as many workers as the cluster
    holds in that range. The loop splits train.batch_size over however many ranks an attempt has."""
    if cfg.train.min_workers is None or cfg.train.min_workers == cfg.train.num_workers:
        return cfg.train.num_workers
    return (cfg.train.min_workers, cfg.train.num_workers)


def data_config(cfg: Config) -> ray.train.DataConfig:
    """How Ray Train hands the series to the ranks: split into one shard per rank (Ray Data's
    streaming_split, fed by a SplitCoordinator actor) where there are several ranks; the whole dataset
    to the one rank of a run that always has one (no coordinator actor to start: about 2 s of a small
    run's start-up here)."""
    return ray.train.DataConfig(datasets_to_split=[] if scaling(cfg) == 1 else "all")


def run_spec(cfg: Config, train_ds: ray.data.Dataset) -> ModelSpec:
    """The model this run trains: the config's, with the covariates the series rows carry."""
    return ModelSpec.from_config(cfg, feature_spec(cfg, train_ds.schema().base_schema))


def reused_model(cfg: Config, train_ds: ray.data.Dataset) -> tuple[ray.train.Checkpoint, str] | None:
    """train.warm_epochs=0: the warm start's checkpoint and its URI, to forecast with as it is (no Ray
    Train run); None where this run trains (warm_epochs > 0, or no warm start found)."""
    if cfg.train.warm_epochs > 0:
        return None
    uri = checkpoint.warm_start_uri(cfg)
    return None if uri is None else (checkpoint.checked_checkpoint(cfg, uri, run_spec(cfg, train_ds)), uri)


def fit(cfg: Config, train_ds: ray.data.Dataset, callbacks: list | None = None) -> ray.train.Result:
    """Run the TorchTrainer over the clean series; returns Ray's Result (checkpoint, metrics).

    `callbacks`: Ray Train callbacks of the run (forecaster.tune passes Tune's TuneReportCallback).
    """
    from ray.train.torch import TorchTrainer

    storage = resolve(checkpoint.storage_uri(cfg), cfg.data.storage_options)
    spec = run_spec(cfg, train_ds)
    warm_start = checkpoint.warm_start_checkpoint(cfg, spec)
    checkpoint.check_resumable(storage, checkpoint.run_name(cfg), spec)
    series = train_ds.count()
    settings = LoopSettings.from_config(cfg, series)
    if settings.validation_share < 1:
        log.info("train.max_validation_series=%d: validation on about %d of %d series", cfg.train.max_validation_series,
                 round(settings.validation_share * series), series)
    if settings.windows_per_series < cfg.train.windows_per_series:
        log.info("train.max_windows_per_epoch=%d: %.2f windows per series and epoch for %d series "
                 "(train.windows_per_series=%d)", cfg.train.max_windows_per_epoch, settings.windows_per_series,
                 series, cfg.train.windows_per_series)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"spec": spec, "settings": settings, "warm_start": warm_start},
        scaling_config=ray.train.ScalingConfig(
            num_workers=scaling(cfg),
            use_gpu=cfg.train.use_gpu,
            resources_per_worker={"CPU": cfg.train.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=checkpoint.run_name(cfg),
            storage_path=storage.path,
            storage_filesystem=storage.fs,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            # Ray Train's own INFO lines (one per report per rank) drown the per-epoch progress: shown
            # only at ray.log_level=INFO (--verbose), like Ray's other lines (forecaster.console)
            logging_config=ray.train.LoggingConfig(log_level=cfg.ray.log_level),
            # test-only fault hooks must reach workers even when Ray was started before they were set
            worker_runtime_env={"env_vars": fault_hook_env()},
            callbacks=callbacks,
        ),
        datasets={"train": train_ds},
        dataset_config=data_config(cfg),
    )
    return trainer.fit()
