"""The nightly job: read -> validate -> prepare/train -> predict -> write, in that order.

This module only wires the steps together as Ray Data stages and keeps the books (counts, timings,
manifest); what each step does lives in its own module.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import ray
import ray.train

from forecaster import intervals
from forecaster.checkpoint import checkpoint_uri, load_best
from forecaster.columns import LENGTH, REASON, REJECT_SCHEMA
from forecaster.config import Config, ConfigError
from forecaster.console import SeriesProgress
from forecaster.manifest import build_manifest, report_series
from forecaster.predict import SeriesPredictor, output_schema
from forecaster.read import check_schema, read_series, read_side_table
from forecaster.report import report_location, write_report
from forecaster.runtime import init_ray, node_set, nodes_of, predict_pool
from forecaster.score import score_earlier
from forecaster.storage import resolve
from forecaster.theta import AUTO, recorded, resolved
from forecaster.train import VALIDATED_COLUMNS, fit, reused_model
from forecaster.validate import attach_side_tables, clean_rows, min_length, reject_rows, validate_batch
from forecaster.write import FORECASTS, REJECTS, count_models, manifest_location, write_manifest, write_partition

log = logging.getLogger(__name__)


def check_output_location(cfg: Config) -> None:
    data, out = resolve(cfg.data.uri).path.rstrip("/"), resolve(cfg.output.uri).path.rstrip("/")
    if out == data or out.startswith(data + "/"):
        raise ConfigError(f"output.uri={cfg.output.uri!r} lies inside data.uri={cfg.data.uri!r}")


class Timer:
    def __init__(self):
        self.start = time.perf_counter()
        self.marks: dict[str, float] = {}
        self._last = self.start

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.marks[name] = now - self._last
        self._last = now

    def total(self) -> dict[str, float]:
        return {**self.marks, "total": time.perf_counter() - self.start}


def validate_options(cfg: Config) -> dict:
    """Keyword arguments of `validate_batch` from the config."""
    return {"freq": cfg.data.freq, "horizon": cfg.model.horizon, "run_date": cfg.forecast_date,
            "short_series": cfg.model.short_series}


def validate_series(cfg: Config, series: ray.data.Dataset) -> ray.data.Dataset:
    """Series rows with reject_reason/reject_detail columns (null for clean series), materialised;
    with data.static_uri / data.future_uri, their values joined on (see validate.attach_side_tables)."""
    validated = series.map_batches(
        validate_batch,
        fn_kwargs=validate_options(cfg),
        batch_format="pyarrow",
        batch_size=None,
    )
    static, future = read_side_table(cfg, "static"), read_side_table(cfg, "future")
    if static is not None or future is not None:
        validated = validated.map_batches(
            attach_side_tables,
            fn_kwargs={"freq": cfg.data.freq, "horizon": cfg.model.horizon,
                       "static": None if static is None else ray.put(static),
                       "future": None if future is None else ray.put(future)},
            batch_format="pyarrow",
            batch_size=None,
        )
    return validated.materialize()


def clean_series(validated: ray.data.Dataset) -> ray.data.Dataset:
    """The series that passed validation, without the reject columns, materialised."""
    return validated.map_batches(clean_rows, batch_format="pyarrow", batch_size=None).materialize()


def trainable_series(cfg: Config, clean: ray.data.Dataset) -> ray.data.Dataset:
    """Clean series long enough for the LSTM (shorter ones get baselines only), materialised; `clean`
    itself where none is too short (no third copy of the series in the object store)."""
    shortest = min_length(cfg.model.horizon)
    if clean.filter(expr=f"{LENGTH} < {shortest}").count() == 0:
        return clean
    return clean.filter(expr=f"{LENGTH} >= {shortest}").materialize()


def predictor_options(cfg: Config) -> dict:
    """Keyword arguments of `SeriesPredictor` from the config (all but the checkpoint)."""
    return {"freq": cfg.data.freq, "season": cfg.season, "horizon": cfg.model.horizon,
            "fallback": cfg.model.fallback, "combine": cfg.model.combine, "nonnegative": cfg.model.nonnegative,
            "statistical": cfg.model.statistical, "levels": tuple(cfg.model.levels),
            "seasonality_level": cfg.model.seasonality_level,
            "use_gpu": cfg.train.use_gpu, "precision": cfg.predict.precision}


def predict(cfg: Config, clean: ray.data.Dataset, checkpoint: ray.train.Checkpoint | None,
            predictor: type = SeriesPredictor, **extra) -> ray.data.Dataset:
    """Forecast rows for every clean series (lazy: executes when written).

    `predictor` is SeriesPredictor or a subclass (the backtest's scorer), `extra` its own arguments.
    """
    return clean.map_batches(
        predictor,
        fn_constructor_kwargs={"checkpoint": checkpoint, **predictor_options(cfg), **extra},
        compute=predict_pool(cfg, clean.count()),
        num_gpus=1 if cfg.train.use_gpu else None,
        batch_size=cfg.predict.batch_size,
        batch_format="pyarrow",
    )


def split_rejects(validated: ray.data.Dataset) -> tuple[ray.data.Dataset, ray.data.Dataset, dict]:
    """Validated rows -> (clean series rows, reject rows, counts), both materialised."""
    rejects = validated.map_batches(reject_rows, batch_format="pyarrow", batch_size=None).materialize()
    clean = clean_series(validated)
    reasons = Counter()
    for batch in rejects.select_columns([REASON]).iter_batches(batch_format="pyarrow", batch_size=65536):
        reasons.update(batch[REASON].to_pylist())
    counts = {"input": validated.count(), "forecast": clean.count(), "rejected": rejects.count(),
              "reject_reasons": dict(reasons)}
    log.info("%d series: %d clean, %d rejected", counts["input"], counts["forecast"], counts["rejected"])
    return clean, rejects, counts


def train_clean(cfg: Config, clean: ray.data.Dataset, counts: dict) -> tuple[ray.train.Checkpoint | None,
                                                                            str | None, dict]:
    """Train on the clean series long enough for the network (sets counts["trained_on"]);
    returns (checkpoint, its URI, training metrics), no checkpoint when no series is long enough.
    train.warm_epochs=0 with a warm start found: that model as it is, nothing trained. The metrics'
    `statistical` says which partner the forecasts use (_statistical_record)."""
    trainable = trainable_series(cfg, clean)
    counts["trained_on"] = trainable.count()
    if not counts["trained_on"]:
        log.warning("no series long enough for the LSTM: baselines only")
        # auto has nothing to choose on: the first candidate, as the predictor without a checkpoint takes it
        return None, None, {"statistical": _statistical_record(cfg, None, resolved(cfg.model.statistical, None))}
    reused = reused_model(cfg, trainable)
    if reused is not None:
        checkpoint, uri = reused
        log.info("train.warm_epochs=0: forecasting with %s as it is, no training", uri)
        counts["trained_on"] = 0
        with checkpoint.as_directory() as path:
            best = load_best(path)
        try:  # intervals it cannot draw (a newer version's unit): refused here, by name, not in every predictor
            intervals.read(best.calibration)
        except ValueError as exc:
            raise ConfigError(f"train.warm_start={uri}: {exc}; with train.warm_epochs above 0 this "
                              "version trains from it and calibrates anew, or forecast with the version that "
                              "wrote it") from None
        # what the predictor forecasts with: the reused model's partner and seasonality test
        return checkpoint, uri, {"warm_started": True, "epochs": 0, "reused_checkpoint": uri,
                                 "statistical": _statistical_record(cfg, best.statistical,
                                                                    best.partner(cfg.model.statistical)),
                                 "seasonality_level": best.level(cfg.model.seasonality_level)}
    result = fit(cfg, trainable)
    metrics = _training_metrics(result)
    choice = metrics.get("statistical")  # auto's, as training made it and the checkpoint keeps it
    metrics["statistical"] = _statistical_record(cfg, choice, resolved(cfg.model.statistical, choice))
    return result.checkpoint, checkpoint_uri(cfg, result.checkpoint), metrics


def _statistical_record(cfg: Config, choice: dict | None, chosen: str) -> dict:
    """The manifest's metrics.statistical: auto's record as training made it (`choice`, train._choice:
    with the candidates' errors), or the partner the run's forecasts use (`chosen`) and what was
    configured."""
    if cfg.model.statistical == AUTO and recorded(choice):
        return choice
    return {"configured": cfg.model.statistical, "chosen": chosen}


def predict_and_write(cfg: Config, root, clean: ray.data.Dataset, rejects: ray.data.Dataset,
                      checkpoint: ray.train.Checkpoint | None, counts: dict,
                      realised: dict | None = None) -> tuple[dict, list[str]]:
    """Forecast every clean series and commit the forecasts, then the rejects, as the partitions of
    run.date (sets counts["by_model"]); returns (their URIs, the nodes the predictor actors ran on).
    `realised`: the intervals' calibration on earlier runs' errors (SeriesPredictor's)."""
    progress = SeriesProgress(counts["forecast"])  # the console's progress line (off outside the CLI)
    predictors = node_set()  # where the predictor actors run
    if counts["forecast"] > 0:
        forecasts = predict(cfg, clean, checkpoint, progress=progress.counter, placement=predictors,
                            realised=realised)
    else:
        log.warning("no clean series: writing rejects only")
        forecasts = ray.data.from_arrow(output_schema(cfg).empty_table())
    with progress:
        forecasts_loc = write_partition(root, FORECASTS, cfg.forecast_date, forecasts, output_schema(cfg))
    counts["by_model"] = count_models(forecasts_loc, cfg.model.horizon)
    rejects_loc = write_partition(root, REJECTS, cfg.forecast_date, rejects, REJECT_SCHEMA)
    return {"forecasts": forecasts_loc.uri, "rejects": rejects_loc.uri}, nodes_of(predictors)


def run(cfg: Config) -> dict:
    """Run the whole job for `cfg.forecast_date`; returns the manifest that was written."""
    check_output_location(cfg)
    timer = Timer()
    root = resolve(cfg.output.uri, cfg.data.storage_options)
    checked = check_schema(cfg)  # file-level errors stop the job before Ray starts
    init_ray(cfg)
    timer.mark("ray_init")

    validated = validate_series(cfg, read_series(cfg, checked))  # read, validate
    timer.mark("read_validate")
    scores, realised = score_earlier(cfg, root, validated)  # earlier forecasts scored; intervals on their errors
    timer.mark("score")
    clean, rejects, counts = split_rejects(validated)
    del validated  # frees its blocks in the object store: clean and rejects hold what follows
    timer.mark("split_rejects")
    checkpoint, checkpoint_uri, metrics = train_clean(cfg, clean, counts)  # prepare, train
    timer.mark("train")
    outputs, predict_nodes = predict_and_write(cfg, root, clean, rejects, checkpoint, counts,
                                               realised)  # predict, write
    timer.mark("predict_write")
    plotted = []
    if cfg.report.enabled and counts["forecast"] > 0:
        plotted = report_series(clean, cfg.data.freq, cfg.model.horizon, cfg.report.sample_series,
                                metrics.get("worst_series", []))
        timer.mark("report_series")
    return _write_books(cfg, root, counts, metrics, timer, checkpoint_uri, outputs, scores, plotted,
                        {"train": metrics.pop("placement", []), "predict": predict_nodes}, realised)


def _write_books(cfg: Config, root, counts: dict, metrics: dict, timer: Timer, checkpoint_uri: str | None,
                 outputs: dict, scores: dict | None, plotted: list, placement: dict,
                 realised: dict | None = None) -> dict:
    """The manifest (written last: it names what the run committed), then the report. Its `intervals`:
    model.interval_calibration and the realised errors' calibration the predictor drew from (None: the
    validation window's alone)."""
    outputs["manifest"] = manifest_location(root, cfg.forecast_date).uri
    if scores is not None:
        outputs["scores"] = scores["uri"]
    if cfg.report.enabled:
        outputs["report"] = report_location(root, cfg.forecast_date).uri
    manifest = build_manifest(cfg.to_dict(), counts, metrics, timer.total(), checkpoint_uri, outputs)
    manifest["placement"] = placement  # node ids: of each Ray Train rank, one list per attempt; of the predictors
    if scores is not None:
        manifest["scores"] = {"origins": scores["origins"]}
    if plotted:
        manifest["report_series"] = plotted
    manifest["intervals"] = {"calibration": cfg.model.interval_calibration, "realised": realised}
    write_manifest(root, cfg.forecast_date, manifest)
    if cfg.report.enabled:
        _write_report(cfg)
    return manifest


def _write_report(cfg: Config) -> None:
    """The HTML report, from what the run committed; a report that fails does not fail the run (its
    forecasts and manifest are committed): `forecaster report` rebuilds it."""
    try:
        write_report(cfg)  # logs where it went
    except Exception:
        log.exception("the HTML report could not be written; rebuild it with `forecaster report`")


def _training_metrics(result) -> dict:
    history = result.metrics or {}
    validation = {column: {metric: history.get(f"val_{metric}_{name}") for metric in ("mase", "smape")}
                  for name, column in VALIDATED_COLUMNS.items() if f"val_mase_{name}" in history}
    return {
        "epochs": int(history.get("epoch", -1)) + 1,
        "best_epoch": history.get("best_epoch"),
        "refit_epochs": history.get("refit_epochs", 0),  # epochs on whole series after best_epoch
        "best_val_loss": history.get("best_val_loss"),
        "combine_weight": history.get("combine_weight"),  # the LSTM's weight in forecast
        "statistical": history.get("statistical"),  # model.statistical=auto's choice (statistical_record)
        "last_val_loss": history.get("val_loss"),
        "restarts": history.get("restarts", 0),
        "warm_started": history.get("warm_started", False),
        "history": history.get("history", []),
        "validation": validation,  # per output column: mean MASE and sMAPE on each series' last horizon
        "worst_series": history.get("worst_series", []),
        "placement": history.get("placement", []),
        **{k: v for k, v in history.items() if k.startswith("val_") or k == "initial_val_loss"},
    }
