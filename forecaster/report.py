"""The HTML report of a run: one self-contained file to open every morning.

`write_report(cfg)` reads what the run of `run.date` stored under `output.uri` (the manifest, the
committed forecasts and rejects partitions) and writes `reports/forecast_date=<run.date>.html`
through the storage layer, in one step. It needs no Ray and no model, so `forecaster report`
rebuilds a report in seconds. The backtest's report: report_backtest.py.

Self-contained: the CSS is in the page, the plots are inline SVG (plots.py), nothing is fetched.
Bounded whatever the number of series: at most MAX_PLOTS series plotted per kind, MAX_ROWS rows in
a table, MAX_ORIGINS forecast origins. Any manifest key may be missing (a manifest of an older run):
its section then says what was not recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import logging

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as pads
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from forecaster import plots
from forecaster.columns import (
    BASELINES,
    CUTOFF,
    DS,
    FORECAST,
    ID,
    INTERVAL,
    LSTM,
    MODEL,
    NAIVE,
    SEASONAL_NAIVE,
    STATISTICAL_METHODS,
    interval,
    partition_name,
)
from forecaster.config import Config
from forecaster.manifest import interval_line, sample_key, statistical_choice
from forecaster.storage import Location, StorageError, read_json, resolve, write_bytes
from forecaster.theta import AUTO, recorded
from forecaster.write import FORECASTS, REJECTS, committed_paths, manifest_location

log = logging.getLogger(__name__)

REPORTS = "reports"
MAX_PLOTS = 24  # series plots per kind (sample, worst), whatever report.sample_series / worst_series say
MAX_ROWS = 50  # rows of any table (rejects, origins, reasons, ...)
MAX_ORIGINS = 60  # forecast origins in the scores plot (newest)
MAX_HISTORY = 1000  # history points plotted per series (the newest)
MAX_TEXT = 160  # characters of an id or a detail shown in a cell
MAX_CONFIG = 20_000  # characters of the resolved config shown
MODEL_ORDER = (FORECAST, LSTM, "no_fallback", *STATISTICAL_METHODS, SEASONAL_NAIVE, NAIVE)
STAGES = ("ray_init", "read_validate", "split_rejects", "score", "train", "predict_write", "report_series")


def report_location(root: Location, forecast_date: str) -> Location:
    return root.join(REPORTS, partition_name(forecast_date, ".html"))


def write_report(cfg: Config) -> Location:
    """Build the report of `cfg.forecast_date` from storage and write it; returns where it went."""
    root = resolve(cfg.output.uri, cfg.data.storage_options)
    html = build_report(root, cfg.forecast_date, cfg.report.sample_series, cfg.report.worst_series)
    return write_html(report_location(root, cfg.forecast_date), html)


def write_html(loc: Location, html: str) -> Location:
    """Write a page in one step (a reader sees the old or the new one) as text/html."""
    write_bytes(loc, html.encode(), content_type="text/html; charset=utf-8")
    log.info("report: %s (%.0f kB)", loc.uri, len(html.encode()) / 1e3)
    return loc


def build_report(root: Location, forecast_date: str, sample_series: int = 6, worst_series: int = 6) -> str:
    """The report's HTML from the manifest and partitions of `forecast_date` under `root`."""
    loc = manifest_location(root, forecast_date)
    try:
        manifest = read_json(loc)
    except StorageError as exc:
        raise StorageError(f"no manifest for run.date={forecast_date} under {root.uri} ({exc}): "
                           "a report is built from what `forecaster run` stored") from exc
    except ValueError as exc:
        raise StorageError(f"{loc.uri}: not a JSON document ({exc})") from exc
    if not isinstance(manifest, dict):
        raise StorageError(f"{loc.uri}: expected a JSON object (the run's manifest), found {type(manifest).__name__}")
    config = manifest.get("config") or {}
    context = {
        "title": f"Forecast {forecast_date}",
        "forecast_date": forecast_date,
        "header": header(manifest, root),
        "numbers": numbers(manifest),
        "training": training(manifest.get("metrics") or {}),
        "validation": {**validation(manifest.get("metrics") or {}), "partner": statistical_choice(manifest),
                       "intervals": interval_line(manifest["intervals"]) if manifest.get("intervals") else None},
        "series": series_plots(root, forecast_date, manifest, min(sample_series, MAX_PLOTS),
                               min(worst_series, MAX_PLOTS)),
        "scores": scores(manifest.get("scores"), (config.get("score") or {}).get("enabled", True)),
        "rejects": rejects(root, forecast_date, manifest.get("counts") or {}),
        "outputs": {k: str(v) for k, v in list((manifest.get("outputs") or {}).items())[:MAX_ROWS]},
        "config_json": clip(json.dumps(config, indent=2, sort_keys=True, default=str), MAX_CONFIG),
    }
    return render("report.html.j2", context)


# ---- sections: plain dicts for the template -------------------------------------------------------

def header(manifest: dict, root: Location) -> dict:
    config = manifest.get("config") or {}
    data, model, run = (config.get(k) or {} for k in ("data", "model", "run"))
    versions = manifest.get("versions") or {}
    # model.statistical=auto: the partner the run chose, where it recorded one (a backtest's windows choose
    # each their own: its Windows table shows them)
    chosen = recorded((manifest.get("metrics") or {}).get("statistical"))
    return {"run_name": run.get("name", "forecaster"), "data_uri": data.get("uri"), "output_uri": root.uri,
            "freq": data.get("freq"), "horizon": model.get("horizon"),
            "model": ", ".join(f"{k}={model[k]}" for k in ("hidden_size", "num_layers", "loss", "combine",
                                                             "statistical") if k in model)
            + (f" (chose {chosen})" if model.get("statistical") == AUTO and chosen else ""),
            "forecaster": versions.get("forecaster"), "checkpoint_uri": manifest.get("checkpoint_uri"),
            "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def numbers(manifest: dict) -> dict:
    """The run in numbers: headline cards and the tables by model, by reject reason, by stage."""
    counts, metrics = manifest.get("counts") or {}, manifest.get("metrics") or {}
    timings = {k: v for k, v in (manifest.get("timings_s") or {}).items() if isinstance(v, (int, float))}
    total_in = counts.get("input")
    epochs = metrics.get("epochs")
    cards = [
        {"label": "series in", "value": count(total_in), "note": ""},
        {"label": "forecast", "value": count(counts.get("forecast")), "note": share(counts.get("forecast"), total_in)},
        {"label": "rejected", "value": count(counts.get("rejected")), "note": share(counts.get("rejected"), total_in),
         "alert": bool(counts.get("rejected"))},
        {"label": "trained on", "value": count(counts.get("trained_on")), "note": "series long enough"},
        {"label": "epochs", "value": count(epochs if epochs is None or epochs >= 0 else None),
         "note": "" if metrics.get("best_epoch") is None else f"best epoch {metrics['best_epoch']}"},
        {"label": "wall time", "value": seconds(timings.get("total")),
         "note": "" if timings.get("train") is None else f"training {seconds(timings['train'])}"},
    ]
    # the manifest's keys come back sorted by name: show the stages in the order the run went through them
    stages = sorted(((k, v) for k, v in timings.items() if k != "total"),
                    key=lambda kv: STAGES.index(kv[0]) if kv[0] in STAGES else len(STAGES))[:MAX_ROWS]
    return {"cards": cards,
            "by_model": bar_rows(counts.get("by_model"), counts.get("forecast")),
            "reasons": bar_rows(counts.get("reject_reasons"), counts.get("rejected")),
            "stages": bar_rows(dict(stages), timings.get("total") or sum(v for _, v in stages), sort=False,
                               value=seconds),
            "versions": [(k, clip(str(v))) for k, v in list((manifest.get("versions") or {}).items())[:MAX_ROWS]]}


def bar_rows(values: dict | None, total, sort: bool = True, value=None) -> list[dict]:
    """Table rows (name, shown value, percent of total, bar width) of {name: number}, largest first."""
    items = [(k, v) for k, v in (values or {}).items() if isinstance(v, (int, float))]
    if sort:
        items.sort(key=lambda kv: -kv[1])
    items = items[:MAX_ROWS]
    total = total or sum(v for _, v in items) or 1
    widest = max((v for _, v in items), default=0) or 1
    return [{"name": clip(str(k)), "value": (value or count)(v), "share": share(v, total),
             "width": round(100 * v / widest, 1)} for k, v in items]


def training(metrics: dict, key: str = "training") -> dict:
    """The training curve (metrics.history) with its best epoch, and the scalar training metrics."""
    facts = [(label, fmt(metrics.get(key), digits)) for label, key, digits in (
        ("epochs", "epochs", 0), ("best epoch", "best_epoch", 0), ("best validation loss", "best_val_loss", 4),
        ("last validation loss", "last_val_loss", 4), ("validation loss before training", "initial_val_loss", 4),
        ("refit epochs on whole series, after the best", "refit_epochs", 0), ("restarts", "restarts", 0))
        if metrics.get(key) is not None]
    if metrics.get("warm_started") is not None:
        facts.append(("warm started", "yes" if metrics["warm_started"] else "no"))
    reused = metrics.get("reused_checkpoint")
    if reused:  # train.warm_epochs=0
        facts.append(("model", clip(str(reused))))
        return {"facts": facts, "svg": None, "missing": f"Not trained in this run: it forecast with the model of "
                f"{clip(str(reused))} as it is (train.warm_epochs=0)."}
    history = [h for h in metrics.get("history") or [] if isinstance(h, dict) and "epoch" in h]
    if not history:
        return {"facts": facts, "svg": None, "missing": "Training curve: not recorded by this run "
                "(the manifest has no metrics.history)." if metrics else "Training: not recorded by this run "
                "(no network was trained, or the manifest has no metrics)."}
    best = metrics.get("best_epoch")
    if best is None:  # older manifests: the best epoch is the one with the lowest validation loss
        scored = [h for h in history if h.get("val_loss") is not None]
        best = min(scored, key=lambda h: h["val_loss"])["epoch"] if scored else None
    return {"facts": facts, "svg": Markup(plots.training_curve(history, best, key)), "missing": None}


def validation(metrics: dict) -> dict:
    """Validation MASE and sMAPE per model (metrics.validation, or the older flat keys)."""
    recorded = metrics.get("validation")
    note = None
    if not isinstance(recorded, dict) or not recorded:
        recorded = {name: {"mase": metrics.get(f"val_mase_{key}"), "smape": metrics.get(f"val_smape_{key}")}
                    for name, key in (("LSTM", "lstm"), ("SeasonalNaive", "seasonal_naive"))
                    if metrics.get(f"val_mase_{key}") is not None}
        if not recorded:
            return {"rows": [], "missing": "Validation metrics: not recorded by this run "
                    "(the manifest has no metrics.validation)."}
        note = ("Per-model validation (metrics.validation) was not recorded by this run: the LSTM and "
                "seasonal naive only, from its older keys metrics.val_mase_*, val_smape_*.")
    models = ordered(recorded)
    mase = {m: number(recorded[m].get("mase")) for m in models if isinstance(recorded[m], dict)}
    best = lowest(mase)
    widest = max((v for v in mase.values() if v is not None), default=0) or 1
    rows = [{"model": m, "mase": fmt(mase[m]), "smape": fmt(number(recorded[m].get("smape")), 2), "best": m == best,
             "width": 0 if mase[m] is None else round(100 * mase[m] / widest, 1)} for m in mase]
    return {"rows": rows, "missing": None, "note": note}


def series_plots(root: Location, forecast_date: str, manifest: dict, sample_n: int, worst_n: int) -> dict:
    """The plotted series: manifest.report_series (history tail, role, validation scores), their forecast
    rows read from the committed forecasts partition; an older run's forecasts sampled without history."""
    recorded = manifest.get("report_series")
    notes = []
    if isinstance(recorded, list):
        chosen = {role: [s for s in recorded if isinstance(s, dict) and s.get("role") == role][:n]
                  for role, n in (("sample", sample_n), ("worst", worst_n))}
    else:
        chosen = {"sample": None, "worst": None}
        notes.append("History and the worst series: not recorded by this run (the manifest has no "
                     "report_series); the sample below shows forecasts only.")
    try:
        paths = committed_paths(root, FORECASTS, forecast_date)
        dataset = pads.dataset(paths, filesystem=root.fs, format="parquet")
    except (StorageError, OSError, ValueError) as exc:
        return {"sample": [], "worst": [], "legend": [],
                "notes": [f"Forecast plots: no forecasts partition to read ({exc})."]}
    if chosen["sample"] is None:
        ids = pc.unique(dataset.to_table(columns=["unique_id"])["unique_id"]).to_pylist()
        chosen["sample"] = [{"unique_id": i, "role": "sample"} for i in sample_ids(ids, sample_n)]
    wanted = [str(s.get("unique_id")) for kind in chosen.values() for s in kind or []]
    rows = forecast_rows(dataset, wanted)
    figures = {role: [one_series(s, rows.get(str(s.get("unique_id"))), f"{role}-{i}") for i, s in enumerate(kind)]
               for role, kind in chosen.items() if kind is not None}
    legend = {entry: None for kind in figures.values() for figure in kind for entry in figure.pop("legend")}
    rank = {"line": 3, "dashed": 2, "thick": 1}  # history, forecast, intervals, LSTM, baselines
    legend = sorted(legend, key=lambda e: (-1 if e[0] == "history" else rank.get(e[2], 1.5), e[2]))
    return {"sample": figures.get("sample", []), "worst": figures.get("worst"), "notes": notes, "legend": legend}


def sample_ids(ids, k: int) -> list[str]:
    """The `k` ids with the smallest sample keys (manifest.sample_key, the hash the run samples its
    report_series by): the same ids for the same set, whatever their order or files."""
    unique = np.asarray(sorted({str(i) for i in ids}), dtype=object)
    return unique[np.argsort(sample_key(unique), kind="stable")[:k]].tolist()


def forecast_rows(dataset: pads.Dataset, ids: list[str]) -> dict[str, pd.DataFrame]:
    """The forecast rows of `ids` (the columns a plot draws), by id, sorted by ds."""
    if not ids:
        return {}
    names = dataset.schema.names
    columns = [c for c in names if c in (ID, DS, FORECAST, MODEL, CUTOFF, LSTM, *BASELINES) or INTERVAL.match(c)]
    frame = dataset.to_table(columns=columns, filter=pc.field(ID).isin(ids)).to_pandas()
    return {str(i): g.sort_values(DS).reset_index(drop=True) for i, g in frame.groupby(ID, sort=False)}


def intervals(columns) -> list[tuple[str, str, str]]:
    """(label, lo, hi) of the forecast's intervals (those of `forecast`, else the LSTM's), widest first."""
    found = {}
    for column in columns:
        match = INTERVAL.match(column)
        if not match or match["side"] != "lo":
            continue
        hi = interval(match["model"], "hi", match["level"])
        if hi in columns:
            found.setdefault(match["model"], []).append((float(match["level"]), column, hi))
    model = FORECAST if FORECAST in found else next(iter(found), None)
    return [(f"{level:g}% interval ({model})", lo, hi) for level, lo, hi in sorted(found.get(model, []), reverse=True)]


def one_series(recorded: dict, rows: pd.DataFrame | None, key: str) -> dict:
    """One plotted series: the figure and its caption (the id, the model used, validation scores)."""
    unique_id = str(recorded.get("unique_id"))
    caption = {"id": clip(unique_id), "model": None, "cutoff": None, "validation": [], "history": True}
    score = recorded.get("validation")
    if isinstance(score, dict):
        caption["validation"] = [(m, fmt(number(score.get(m)))) for m in ordered(score)]
    history = None
    if recorded.get("ds") and recorded.get("y"):
        history = pd.DataFrame({"ds": pd.to_datetime(recorded["ds"]), "y": pd.to_numeric(recorded["y"])})
        history = history.tail(MAX_HISTORY)
    else:
        caption["history"] = False
    if rows is None or rows.empty:
        return {"caption": caption, "svg": None, "legend": []}
    if "model" in rows:
        caption["model"] = clip(str(rows["model"].iloc[0]))
    if "cutoff" in rows:
        caption["cutoff"] = str(pd.Timestamp(rows["cutoff"].iloc[0]).date())
    svg, legend = plots.series_forecast(history, rows, intervals(list(rows.columns)), key=f"series-{key}")
    return {"caption": caption, "svg": Markup(svg), "legend": legend}


def scores(recorded: dict | None, enabled: bool) -> dict:
    """The scores of earlier forecasts (manifest.scores.origins, newest first): MASE per origin per model."""
    if not isinstance(recorded, dict):
        why = "scoring is off (score.enabled=false)" if not enabled else "the manifest has no scores"
        return {"missing": f"Scores of earlier forecasts: not recorded by this run ({why}).", "rows": []}
    origins = [o for o in recorded.get("origins") or [] if isinstance(o, dict) and o.get("origin_date")]
    if not origins:
        return {"missing": "Scores of earlier forecasts: no earlier forecast under output.uri has a step "
                "that this run's data observes yet.", "rows": []}
    origins = sorted(origins, key=lambda o: str(o["origin_date"]), reverse=True)[:MAX_ORIGINS]
    models = ordered({m: None for o in origins for m in (o.get("models") or {})})[:8]

    def mase_of(origin: dict, model: str):
        return number(((origin.get("models") or {}).get(model) or {}).get("mase"))

    frame = pd.DataFrame([{"origin_date": o["origin_date"], **{m: mase_of(o, m) for m in models}}
                          for o in reversed(origins)], columns=["origin_date", *models])
    coverage = sorted({k for o in origins for k in ((o.get("models") or {}).get("forecast") or {})
                       if k.startswith("coverage")})
    rows = []
    for o in origins[:MAX_ROWS]:
        values = {m: mase_of(o, m) for m in models}
        best = lowest(values)
        series = o.get("series") or {}
        forecast = (o.get("models") or {}).get("forecast") or {}
        rows.append({"origin": str(o["origin_date"]), "steps": count(o.get("steps")),
                     "scored": count(series.get("scored")), "pending": count(series.get("pending")),
                     "mase": [(fmt(values[m]), m == best) for m in models],
                     "coverage": [fmt(number(forecast.get(c)), 3) for c in coverage]})
    return {"missing": None, "models": models, "coverage": coverage, "rows": rows,
            "svg": Markup(plots.scores_over_time(frame, models)), "shown": len(rows), "total": len(origins)}


def rejects(root: Location, forecast_date: str, counts: dict) -> dict:
    """The first rejected series with reason and detail (the partition's first rows, files in name order)."""
    try:
        dataset = pads.dataset(committed_paths(root, REJECTS, forecast_date), filesystem=root.fs, format="parquet")
        head = dataset.head(MAX_ROWS, columns=[c for c in ("unique_id", "reason", "detail")
                                               if c in dataset.schema.names]).to_pylist()
    except (StorageError, OSError, ValueError) as exc:
        return {"rows": [], "total": count(counts.get("rejected")),
                "missing": f"Rejects: no rejects partition to read ({exc})."}
    total = counts.get("rejected")
    total = count(dataset.count_rows() if total is None else total)
    rows = [{"id": clip(str(r.get("unique_id"))), "reason": clip(str(r.get("reason"))),
             "detail": clip(str(r.get("detail") or ""))} for r in head]
    return {"rows": rows, "total": total, "missing": None}


# ---- formatting and rendering ---------------------------------------------------------------------

def ordered(models) -> list[str]:
    """Model names in report order: the forecast first, then the LSTM, then the baselines, then the rest."""
    known = [m for m in MODEL_ORDER if m in models]
    return known + sorted(m for m in models if m not in MODEL_ORDER)


def lowest(values: dict) -> str | None:
    """The key of the lowest defined value (the best model on an error metric)."""
    return min(((v, k) for k, v in values.items() if v is not None), default=(None, None))[1]


def number(value) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def fmt(value, digits: int = 3) -> str:
    value = number(value)
    if value is None:
        return "–"
    return f"{value:,.0f}" if digits == 0 else f"{value:,.{digits}f}"


def count(value) -> str:
    return fmt(value, 0)


def share(part, whole) -> str:
    part, whole = number(part), number(whole)
    return "" if part is None or not whole else f"{100 * part / whole:.1f} %"


def seconds(value) -> str:
    value = number(value)
    if value is None:
        return "–"
    if value < 120:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


_ENV: Environment | None = None


def render(template: str, context: dict) -> str:
    """A template of forecaster/templates with autoescape on: every string from storage is escaped;
    only the SVG of plots.py goes in as markup."""
    global _ENV
    if _ENV is None:
        _ENV = Environment(loader=PackageLoader("forecaster", "templates"), autoescape=True,
                           undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return _ENV.get_template(template).render(**context)
