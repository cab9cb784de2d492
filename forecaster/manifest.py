"""The run manifest (what ran, on what, with which result) and the short summary a person reads."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.columns import FORECAST, ID, LSTM, SEASONAL_NAIVE, STATISTICAL_METHODS, Y
from forecaster.config import REALISED, VALIDATION
from forecaster.intervals import calibrated_steps
from forecaster.theta import AUTO, partner_name, recorded, resolved

PACKAGES = ("forecaster", "torch", "ray", "pyarrow", "pandas", "numpy", "fsspec")


def versions() -> dict:
    found = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def build_manifest(config: dict, counts: dict, metrics: dict, timings: dict, checkpoint_uri: str | None,
                   outputs: dict) -> dict:
    return {
        "config": config,
        "versions": versions(),
        "counts": counts,
        "metrics": metrics,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "checkpoint_uri": checkpoint_uri,
        "outputs": outputs,
    }


def summary_lines(manifest: dict) -> list[str]:
    counts, metrics, outputs = manifest["counts"], manifest["metrics"], manifest["outputs"]
    lines = [
        f"series: {counts['input']} input, {counts['forecast']} forecast, {counts['rejected']} rejected",
    ]
    if counts.get("by_model"):
        lines.append("forecast by: " + ", ".join(f"{k}={v}" for k, v in sorted(counts["by_model"].items())))
    if counts.get("reject_reasons"):
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(counts["reject_reasons"].items()))
        lines.append(f"reject reasons: {reasons}")
    validation = metrics.get("validation") or {}
    if validation.get("forecast", {}).get("mase") is not None:
        shown = [c for c in (FORECAST, LSTM, *STATISTICAL_METHODS, SEASONAL_NAIVE) if c in validation]
        validated, trained = metrics.get("val_series"), counts.get("trained_on")
        cap = (manifest.get("config") or {}).get("train", {}).get("max_validation_series")
        which = (f"of {validated} of the {trained} series (train.max_validation_series)"
                 if validated and trained and cap and trained > cap else "of each series")
        lines.append(f"validation MASE (last horizon {which}): " + ", ".join(
            f"{c} {validation[c]['mase']:.3f}" for c in shown if validation[c].get("mase") is not None)
            + f"; sMAPE forecast {validation['forecast']['smape']:.2f}")
        weight = metrics.get("combine_weight")
        model = (manifest.get("config") or {}).get("model", {})
        if model.get("combine") == "fitted" and weight is not None:
            partner = partner_name(statistical_used(manifest))
            lines.append(f"forecast = {weight:g} x LSTM + {1 - weight:g} x {partner} (model.combine=fitted, chosen on "
                         "validation)")
    elif metrics.get("val_mase_lstm") is not None:  # an older manifest: the LSTM and seasonal naive only
        lines.append(
            "validation (last horizon of each series): "
            f"MASE LSTM {metrics['val_mase_lstm']:.3f} vs seasonal naive {metrics['val_mase_seasonal_naive']:.3f}; "
            f"sMAPE LSTM {metrics['val_smape_lstm']:.2f} vs seasonal naive {metrics['val_smape_seasonal_naive']:.2f}"
        )
    choice = statistical_choice(manifest)
    if choice:
        lines.append(choice)
    for origin in (manifest.get("scores") or {}).get("origins", [])[:1]:  # the newest origin scored
        lines.append("earlier " + score_line(origin))
    if (manifest.get("intervals") or {}).get("realised"):  # a first run's validation window goes unsaid here
        lines.append(interval_line(manifest["intervals"]))
    lines.append(f"forecasts: {outputs['forecasts']}")
    lines.append(f"rejects:   {outputs['rejects']}")
    if outputs.get("scores"):
        lines.append(f"scores:    {outputs['scores']}")
    lines.append(f"manifest:  {outputs['manifest']}")
    if outputs.get("report"):
        lines.append(f"report:    {outputs['report']}")
    lines.append(f"wall time: {manifest['timings_s']['total']:.1f} s ({stage_line(manifest)})")
    return lines


def interval_line(record: dict) -> str:
    """What the intervals of `forecast` were calibrated on (manifest.intervals): the steps drawn from earlier
    runs' realised errors (how many, from which forecast dates), the validation window for the rest."""
    realised = record.get("realised")
    if record.get("calibration") != REALISED:
        return f"intervals: calibrated on the validation window (model.interval_calibration={VALIDATION})"
    if not realised:
        return ("intervals: calibrated on the validation window; too few realised errors of earlier forecasts "
                f"under output.uri yet (model.interval_calibration={REALISED})")
    steps = calibrated_steps(realised)
    errors = [realised["errors"][k - 1] for k in steps]
    origins, few, many = realised["origins"], min(errors), max(errors)
    count = f"{few}" if few == many else f"{few}-{many}"
    rest = "" if len(steps) == len(realised["errors"]) else "; the other steps on the validation window"
    return (f"intervals: {step_span(steps)} of the network's series calibrated on {count} realised "
            f"errors per step of the forecasts of {len(origins)} earlier date{'s' if len(origins) > 1 else ''} "
            f"({', '.join(origins[:3])}{', ...' if len(origins) > 3 else ''}){rest}")


def step_span(steps: list[int]) -> str:
    """'step 1', 'steps 1-3' or 'steps 1, 3' of forecast steps (from 1, ascending)."""
    if len(steps) == 1:
        return f"step {steps[0]}"
    if steps == list(range(steps[0], steps[-1] + 1)):
        return f"steps {steps[0]}-{steps[-1]}"
    return f"steps {', '.join(map(str, steps))}"


def window_intervals(record: dict | None) -> str | None:
    """What a backtest window's intervals (its summary's `intervals`) were drawn from where the earlier
    windows' errors calibrated them: 'the errors of window 0 and window 1 at steps 1-2' (the steps
    said where not all); None where the validation window's were (or none was recorded)."""
    realised = (record or {}).get("realised")
    if not realised:
        return None
    steps = calibrated_steps(realised)
    at = "" if len(steps) == len(realised["errors"]) else f" at {step_span(steps)}"
    return f"the errors of {' and '.join(realised['origins'])}{at}"


STAGE_NAMES = {"ray_init": "Ray start", "read_validate": "read + validate", "score": "scoring",
               "split_rejects": "split", "train": "training", "predict_write": "predict + write",
               "report_series": "report data"}


def statistical_used(manifest: dict) -> str:
    """The model.statistical the run's forecasts used: model.statistical=auto's choice (metrics.statistical),
    else the configured one (theta in a manifest from before the key)."""
    configured = ((manifest.get("config") or {}).get("model") or {}).get("statistical", "theta")
    return resolved(configured, (manifest.get("metrics") or {}).get("statistical"))


def statistical_choice(manifest: dict) -> str | None:
    """'statistical partner: Theta+SES (model.statistical=auto; ...)': what model.statistical=auto chose and
    on what; None where the partner was configured."""
    metrics = manifest.get("metrics") or {}
    record = metrics.get("statistical") or {}
    if record.get("configured") != AUTO or not recorded(record):
        return None
    scored = ", ".join(f"{partner_name(c)} {m:.3f}" for c, m in (record.get("mase") or {}).items() if m is not None)
    if scored:
        basis = f"mean MASE over the last {record.get('windows')} horizons of {record.get('series')} series: {scored}"
    elif metrics.get("reused_checkpoint"):
        basis = "the reused model's training recorded no choice: the partner it was validated with"
    else:
        basis = "no series long enough to train on, so no choice: the first candidate"
    return f"statistical partner: {partner_name(record['chosen'])} (model.statistical=auto; {basis})"


def stage_line(manifest: dict) -> str:
    """'Ray start 4.1 s, read + validate 2.0 s, ..., training 98.3 s (85.0 s in epochs), ...': where the
    wall time went; the epochs' share of training is what is not Ray Train's start-up, checkpoints
    and shutdown."""
    timings, history = manifest.get("timings_s") or {}, (manifest.get("metrics") or {}).get("history") or []
    parts = []
    for key, name in STAGE_NAMES.items():
        if key not in timings:
            continue
        part = f"{name} {timings[key]:.1f} s"
        epochs = sum(h.get("seconds", 0.0) for h in history)
        if key == "train" and epochs:
            part += f" ({epochs:.1f} s in epochs)"
        parts.append(part)
    return ", ".join(parts)


def score_line(origin: dict, first: tuple[str, ...] = ("forecast", "SeasonalNaive")) -> str:
    """'forecasts of 2026-01-01 over 6 observed steps: MASE forecast 0.91, SeasonalNaive 1.12 (600 series)'."""
    models = origin["models"]
    named = [m for m in first if m in models] + [m for m in models if m not in first]
    parts = [f"{m} {models[m]['mase']:.3f}" for m in named if models[m].get("mase") is not None]
    scored = origin["series"].get("scored", 0)
    others = ", ".join(f"{n} {s}" for s, n in origin["series"].items() if s != "scored" and n)
    return (f"forecasts of {origin['origin_date']} over {origin['steps']} observed step(s): MASE "
            f"{', '.join(parts) or 'undefined'} ({scored} series scored{'; ' + others if others else ''})")


def sample_key(ids: np.ndarray) -> np.ndarray:
    """A stable hash of each unique_id (the same on every run and machine): the report's sample is the
    series with the smallest keys."""
    return pd.util.hash_array(np.asarray(ids, dtype=object))


def _report_candidates(batch: pa.Table, sample: int, worst: list[str], tail: int) -> pa.Table:
    """The `sample` series of the block with the smallest sample keys, and those named in `worst`:
    unique_id, key, first_ds of the tail, and the last `tail` values."""
    ids = pc.cast(batch[ID], pa.string()).to_numpy(zero_copy_only=False)
    keys = sample_key(ids)
    chosen = set(np.argsort(keys, kind="stable")[:sample].tolist()) | set(np.flatnonzero(np.isin(ids, worst)).tolist())
    rows = np.array(sorted(chosen), dtype=np.int64)
    lengths = batch["length"].to_numpy(zero_copy_only=False)[rows]
    values = [batch[Y][int(i)].values.to_numpy(zero_copy_only=False)[-tail:] for i in rows]
    return pa.table({ID: pa.array(ids[rows], pa.string()), "key": pa.array(keys[rows], pa.uint64()),
                     "first_ds": batch["first_ds"].take(pa.array(rows)),
                     "skipped": pa.array(np.maximum(lengths - tail, 0), pa.int64()),
                     Y: pa.array(values, pa.list_(pa.float64()))})


def report_series(clean, freq: str, horizon: int, sample: int, worst: list[dict]) -> list[dict]:
    """The series the report plots, with the tail of their history: the `sample` clean series with the
    smallest sample keys (reproducible) and the worst ones on validation (`metrics.worst_series`).
    One pass over `clean` (a Ray Dataset of series rows); only the chosen rows reach the driver."""
    worst_ids = [w["unique_id"] for w in worst]
    if not sample and not worst_ids:
        return []
    tail = 4 * horizon
    found = clean.map_batches(_report_candidates, fn_kwargs={"sample": sample, "worst": worst_ids, "tail": tail},
                              batch_format="pyarrow", batch_size=None).to_pandas()
    if found.empty:
        return []
    found = found.drop_duplicates(ID).set_index(ID)
    sampled = found.sort_values("key", kind="stable").index[:sample].tolist()
    scores = {w["unique_id"]: w for w in worst}
    chosen = [(uid, "sample") for uid in sampled] + [(uid, "worst") for uid in worst_ids if uid in found.index]
    out = []
    offset = pd.tseries.frequencies.to_offset(freq)
    for uid, role in chosen:
        row = found.loc[uid]
        y = np.asarray(row[Y], dtype=np.float64)
        start = pd.Timestamp(row["first_ds"]) + int(row["skipped"]) * offset
        ds = pd.date_range(start, periods=len(y), freq=offset)
        score = scores.get(uid)
        out.append({"unique_id": uid, "role": role, "ds": [d.isoformat() for d in ds],
                    "y": [None if not np.isfinite(v) else float(v) for v in y],
                    "validation": None if score is None else {"forecast": score["mase_forecast"],
                                                              "SeasonalNaive": score["mase_seasonal_naive"]}})
    return out
