"""Tune: a bounded Ray Tune search over a few hyperparameters, stopped early by ASHA.

Each trial is a Tune function trainable that acts as the driver of one Ray Train run: it applies
the trial's values to the config and calls `train.fit` on the same series the nightly job trains
on (read, validated and filtered by the pipeline's own steps). `TuneReportCallback` forwards every
epoch's `val_loss` (the loss on the held-out last `horizon` of each series) to Tune, so ASHA can
stop weak trials after `tune.grace_period` epochs. The first trial runs the config's own values
(the baseline), the others values sampled at random from `search_space()`. The best trial is the
one with the lowest `val_loss` any of its epochs reported (the epoch whose weights a run keeps).

Trials get the config through `tune.with_parameters` (Ray's object store), never through the
trial's config, which Tune writes to its result files: data.storage_options stay out of them.

Everything a search writes lives under `<output.uri>/tune/<experiment>/`: Tune's trial records and,
below `train/`, the trials' Ray Train runs (named after the trial id), apart from the nightly
runs' `<output.uri>/checkpoints/`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time

import ray
import ray.tune
import yaml
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.basic_variant import BasicVariantGenerator

from forecaster.config import Config, config_from_dict
from forecaster.pipeline import check_output_location, clean_series, trainable_series, validate_series
from forecaster.read import DataError, check_schema, read_series
from forecaster.runtime import init_ray
from forecaster.storage import resolve
from forecaster.train import fit

log = logging.getLogger(__name__)

METRIC = "val_loss"
# Not a config key: the trial's input window, in horizons (model.input_size = this x model.horizon).
INPUT_HORIZONS = "input_size_in_horizons"
# A trial only drives its Ray Train run (the workers hold train.num_workers x train.cpus_per_worker);
# Tune refuses a trial that asks for no resource at all, so it asks for almost none.
TRIAL_CPUS = 0.01


def search_space() -> dict:
    """The hyperparameters searched: config keys (and INPUT_HORIZONS) -> Tune domains."""
    return {
        "model.hidden_size": ray.tune.choice([32, 64, 128]),
        "model.num_layers": ray.tune.choice([1, 2, 3]),
        "model.dropout": ray.tune.uniform(0.0, 0.3),
        "train.learning_rate": ray.tune.loguniform(1e-4, 1e-2),
        "train.windows_per_series": ray.tune.choice([16, 32, 64]),
        INPUT_HORIZONS: ray.tune.choice([1, 2, 3]),
    }


def current_params(cfg: Config) -> dict:
    """`cfg`'s own values of the searched keys: the first trial, the baseline the others must beat."""
    params = {key: getattr(getattr(cfg, key.split(".")[0]), key.split(".")[1])
              for key in search_space() if key != INPUT_HORIZONS}
    params[INPUT_HORIZONS] = cfg.input_size / cfg.model.horizon
    return params


def apply_params(cfg: Config, params: dict) -> Config:
    """A validated copy of `cfg` with a trial's values applied."""
    values = cfg.to_dict(redact=False)
    for key, value in params.items():
        if key == INPUT_HORIZONS:
            values["model"]["input_size"] = max(1, round(value * cfg.model.horizon))
            continue
        section, name = key.split(".")
        values[section][name] = value
    return config_from_dict(values)


def write_config(cfg: Config, path: str, header: str = "") -> None:
    """Write `cfg` as YAML for `forecaster run --config`; data.storage_options (credentials) and
    run.date (the nightly run's date is today's) are left out."""
    values = cfg.to_dict(redact=False)
    del values["data"]["storage_options"]
    del values["run"]["date"]
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(comment + yaml.safe_dump(values, sort_keys=False))


class TuneError(RuntimeError):
    """The search produced no usable trial."""


@dataclasses.dataclass
class TrialRow:
    trial_id: str
    params: dict  # the sampled values, keyed as in search_space()
    val_losses: list = dataclasses.field(default_factory=list)  # val_loss of each epoch reported
    # MASE of the LSTM at the best epoch: scale-free, unlike val_loss under model.scaler=window, whose
    # units depend on each trial's input window
    val_mase: float | None = None
    seconds: float = 0.0  # from the trial's start to its end, Ray Train's start-up included
    stopped_early: bool = False  # stopped by ASHA (not by train.patience or the epoch cap)
    error: str | None = None

    @property
    def best_val_loss(self) -> float:
        finite = [v for v in self.val_losses if v is not None and math.isfinite(v)]
        return min(finite) if finite else math.inf


@dataclasses.dataclass
class TuneOutcome:
    trials: list[TrialRow]
    best: TrialRow
    best_config: Config
    current: TrialRow | None  # the first trial: the config's own values
    read_seconds: float  # Ray start, read, validate, filter
    search_seconds: float  # the trials
    experiment_uri: str


class _TrialRecorder(ray.tune.Callback):
    """One TrialRow per trial: its values, per-epoch val_loss, whether ASHA stopped it (in the driver)."""

    def __init__(self, max_epochs: int, patience: int):
        self.max_epochs, self.patience = max_epochs, patience
        self.rows: dict[str, TrialRow] = {}
        self._started: dict[str, float] = {}
        self._last: dict[str, dict] = {}  # each trial's last result

    def on_trial_start(self, iteration, trials, trial, **info):
        self.rows[trial.trial_id] = TrialRow(trial.trial_id, dict(trial.config))
        self._started[trial.trial_id] = time.perf_counter()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        row = self.rows[trial.trial_id]
        row.val_losses.append(result.get(METRIC))
        row.val_mase = result.get("val_mase_lstm", row.val_mase)
        self._last[trial.trial_id] = result

    def _end(self, trial) -> TrialRow:
        row = self.rows[trial.trial_id]
        row.seconds = time.perf_counter() - self._started[trial.trial_id]
        return row

    def on_trial_complete(self, iteration, trials, trial, **info):
        """A trial that ended without an error before the epoch cap (trial_epochs), and not by
        train.patience (its last epoch that many after its best), was stopped by the scheduler. Tune's
        `done` flag on the last result does not tell: whether the callbacks see it set depends on when
        the controller processes ASHA's decision (a test run saw a stopped trial without it)."""
        row = self._end(trial)
        last = self._last.get(trial.trial_id, {})
        patience_stop = (last.get("epoch") is not None and last.get("best_epoch") is not None
                         and last["epoch"] - last["best_epoch"] >= self.patience)
        row.stopped_early = len(row.val_losses) < self.max_epochs and not patience_stop
        log.info("trial %s done: %d epochs%s, best val_loss %.4f", row.trial_id, len(row.val_losses),
                 " (stopped by ASHA)" if row.stopped_early else "", row.best_val_loss)

    def on_trial_error(self, iteration, trials, trial, **info):
        error, row = trial.get_error(), self._end(trial)
        row.error = str(error).strip().splitlines()[-1] if error else "failed"
        log.warning("trial %s failed: %s", trial.trial_id, row.error)


def trial_epochs(cfg: Config) -> int:
    """Epochs a trial trains at most (ASHA's max_t)."""
    return cfg.tune.max_epochs or cfg.train.max_epochs


def _run_trial(params: dict, cfg: Config, series: ray.data.Dataset, train_storage: str) -> None:
    """One trial: the nightly training on `series` with the trial's values, reporting to Tune."""
    trial_cfg = apply_params(cfg, params)
    trial_cfg.train.max_epochs = trial_epochs(cfg)
    trial_cfg.run.name = f"trial-{ray.tune.get_context().get_trial_id()}"  # run name: trial-<id>-<date>
    trial_cfg.train.storage_path = train_storage
    trial_cfg.train.warm_start = "none"  # trials with other architectures cannot start from one checkpoint
    trial_cfg.train.refit_epochs = 0  # a trial is judged by its validation losses; a refit reports none
    fit(trial_cfg, series, callbacks=[TuneReportCallback()])


def read_trainable(cfg: Config) -> ray.data.Dataset:
    """The series the nightly job would train on: the pipeline's read, validate and filter steps."""
    check_output_location(cfg)
    checked = check_schema(cfg)
    init_ray(cfg)
    return trainable_series(cfg, clean_series(validate_series(cfg, read_series(cfg, checked))))


def _trial_dirname(trial) -> str:
    return f"trial-{trial.trial_id}"  # Tune's default name lists every value and gets cut short


def _tuner(cfg: Config, series: ray.data.Dataset, experiment: str, recorder: _TrialRecorder) -> ray.tune.Tuner:
    root = cfg.output.uri.rstrip("/") + "/tune"
    storage = resolve(root, cfg.data.storage_options)
    trainable = ray.tune.with_parameters(_run_trial, cfg=cfg, series=series,
                                         train_storage=f"{root}/{experiment}/train")
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=trial_epochs(cfg),
                              grace_period=min(cfg.tune.grace_period, trial_epochs(cfg)),
                              reduction_factor=cfg.tune.reduction_factor)
    return ray.tune.Tuner(
        ray.tune.with_resources(trainable, {"CPU": TRIAL_CPUS}),
        param_space=search_space(),
        tune_config=ray.tune.TuneConfig(
            metric=METRIC, mode="min", num_samples=cfg.tune.trials, scheduler=scheduler,
            # the random search's own limit: TuneConfig(max_concurrent_trials) ignores this searcher
            search_alg=BasicVariantGenerator(points_to_evaluate=[current_params(cfg)], random_state=cfg.tune.seed,
                                             max_concurrent=cfg.tune.max_concurrent_trials),
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=ray.tune.RunConfig(name=experiment, storage_path=storage.path, storage_filesystem=storage.fs,
                                      callbacks=[recorder], verbose=0),
    )


def tune(cfg: Config) -> TuneOutcome:
    """Run the search; returns every trial and the best config (not written: see write_config)."""
    started = time.perf_counter()
    series = read_trainable(cfg)
    if series.count() == 0:
        raise DataError(f"data.uri={cfg.data.uri}: no series long enough to train on, nothing to tune")
    read_seconds = time.perf_counter() - started
    experiment = f"{cfg.run.name}-tune-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}"
    experiment_uri = f"{cfg.output.uri.rstrip('/')}/tune/{experiment}"
    recorder = _TrialRecorder(trial_epochs(cfg), cfg.train.patience)
    _tuner(cfg, series, experiment, recorder).fit()
    search_seconds = time.perf_counter() - started - read_seconds
    rows = list(recorder.rows.values())
    finished = [r for r in rows if r.error is None and math.isfinite(r.best_val_loss)]
    if not finished:
        first_error = next((r.error for r in rows if r.error), "no trial reported a val_loss")
        raise TuneError(f"every trial failed ({first_error}); see {experiment_uri}")
    best = min(finished, key=lambda r: r.best_val_loss)
    current = next((r for r in rows if r.params == current_params(cfg)), None)
    return TuneOutcome(rows, best, apply_params(cfg, best.params), current, read_seconds, search_seconds,
                       experiment_uri)


_COLUMNS = (("model.hidden_size", "hidden", "{:d}"), ("model.num_layers", "layers", "{:d}"),
            ("model.dropout", "dropout", "{:.3f}"), ("train.learning_rate", "lr", "{:.2e}"),
            (INPUT_HORIZONS, "input/h", "{:g}"), ("train.windows_per_series", "windows", "{:d}"))


def summary_lines(outcome: TuneOutcome) -> list[str]:
    """The trials table (best first) and the search's cost, for the CLI."""
    header = ["trial", *(title for _, title, _ in _COLUMNS), "epochs", "best val_loss", "val MASE", "seconds", "end"]
    table = [header]
    for row in sorted(outcome.trials, key=lambda r: r.best_val_loss):
        end = "error: " + row.error if row.error else "ASHA stop" if row.stopped_early else "completed"
        marks = ("*" if row is outcome.best else "") + ("=" if row is outcome.current else "")
        table.append([f"{row.trial_id} {marks}".strip(),
                      *(fmt.format(row.params[key]) for key, _, fmt in _COLUMNS),
                      str(len(row.val_losses)), f"{row.best_val_loss:.4f}",
                      "-" if row.val_mase is None else f"{row.val_mase:.3f}", f"{row.seconds:.1f}", end])
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in table]
    trials = outcome.trials
    lines.append(
        f"cost: wall time {outcome.read_seconds + outcome.search_seconds:.1f} s (Ray start and reading "
        f"{outcome.read_seconds:.1f} s, trials {outcome.search_seconds:.1f} s); {len(trials)} trials run, "
        f"{sum(r.stopped_early for r in trials)} stopped early by ASHA, {sum(r.error is not None for r in trials)} "
        f"failed; {sum(len(r.val_losses) for r in trials)} epochs in all")
    lines.append("* best, = the config's own values")
    lines.append(f"best: trial {outcome.best.trial_id}, val_loss {outcome.best.best_val_loss:.4f}; "
                 f"trials under {outcome.experiment_uri}")
    return lines
