"""The HTML report of a backtest: `reports/backtests/forecast_date=<run.date>.html`.

Built from what `forecaster backtest` committed in `backtests/forecast_date=<run.date>/` (summary.json,
series.parquet, skipped.parquet), with no Ray; written at the end of the backtest and rebuilt by
`forecaster report --backtest`. Same page style, bounds and helpers as the run's report (report.py).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.dataset as pads
from markupsafe import Markup

from forecaster import plots
from forecaster.columns import partition_name
from forecaster.config import Config
from forecaster.manifest import window_intervals
from forecaster.report import (
    MAX_CONFIG,
    MAX_ROWS,
    REPORTS,
    bar_rows,
    clip,
    count,
    fmt,
    header,
    lowest,
    number,
    ordered,
    render,
    seconds,
    training,
    write_html,
)
from forecaster.storage import Location, StorageError, read_json, resolve
from forecaster.theta import partner_name, recorded
from forecaster.write import partition

BACKTESTS = "backtests"  # forecaster.backtest's table (not imported from there: that pulls in Ray Train and torch)
MAX_WINDOWS = 8  # training curves drawn (the newest windows)


def backtest_report_location(root: Location, forecast_date: str) -> Location:
    return root.join(REPORTS, BACKTESTS, partition_name(forecast_date, ".html"))


def write_backtest_report(cfg: Config) -> Location:
    """Build the report of the backtest of `cfg.forecast_date` from storage and write it; returns where."""
    root = resolve(cfg.output.uri, cfg.data.storage_options)
    html = build_backtest_report(root, cfg.forecast_date)
    return write_html(backtest_report_location(root, cfg.forecast_date), html)


def build_backtest_report(root: Location, forecast_date: str) -> str:
    final = partition(root, BACKTESTS, forecast_date)
    try:
        summary = read_json(final.join("summary.json"))
    except StorageError as exc:
        raise StorageError(f"no backtest for run.date={forecast_date} under {root.uri} ({exc}): "
                           "run `forecaster backtest` first") from exc
    windows = [w for w in summary.get("per_window") or [] if isinstance(w, dict)]
    overall = summary.get("overall") or {}
    models = ordered({m: None for row in overall.values() for m in row if m != "series"})
    context = {
        "title": f"Backtest {forecast_date}",
        "forecast_date": forecast_date,
        "header": header({"config": summary.get("config"), "versions": summary.get("versions")}, root),
        "summary": {k: summary.get(k) for k in ("windows", "step", "horizon", "season")},
        "cards": cards(summary, windows),
        "overall": metric_table(overall, models),
        "windows": [window_row(w) for w in windows[:MAX_ROWS]],
        "by_window": by_window_plot(windows, models),
        "distribution": distribution(final, models),
        "training": [{"window": w.get("window"), **training(w.get("training") or {}, f"training-{w.get('window')}")}
                     for w in windows[-MAX_WINDOWS:]],
        "skipped": skipped(final, windows),
        "versions": [(k, clip(str(v))) for k, v in list((summary.get("versions") or {}).items())[:MAX_ROWS]],
        "output": summary.get("output"),
        "config_json": clip(json.dumps(summary.get("config") or {}, indent=2, sort_keys=True, default=str),
                            MAX_CONFIG),
    }
    return render("backtest.html.j2", context)


def cards(summary: dict, windows: list[dict]) -> list[dict]:
    def total(key: str) -> int:
        return sum(int((w.get("counts") or {}).get(key) or 0) for w in windows)

    mase = (summary.get("overall") or {}).get("mase") or {}
    skipped = total("no_history") + total("non_finite_actual") + total("rejected")
    return [{"label": "windows", "value": count(summary.get("windows")),
             "note": f"horizon {summary.get('horizon')}, step {summary.get('step')}"},
            {"label": "series-windows scored", "value": count(total("scored")),
             "note": f"LSTM on {count(total('lstm_scored'))}"},
            {"label": "skipped", "value": count(skipped), "note": "see the last section", "alert": skipped > 0},
            {"label": "MASE forecast", "value": fmt(mase.get("forecast")),
             "note": f"seasonal naive {fmt(mase.get('SeasonalNaive'))}"},
            {"label": "wall time", "value": seconds((summary.get("timings_s") or {}).get("total")), "note": ""}]


def metric_table(means: dict, models: list[str]) -> dict:
    """One row per metric: the mean of each model, the lowest marked where two or more models have one
    (not for an interval's coverage or width: there lower is not better)."""
    rows = []
    for metric, row in list(means.items())[:MAX_ROWS]:
        values = {m: number(row.get(m)) for m in models}
        compared = sum(v is not None for v in values.values()) > 1  # e.g. msis: forecast alone unless loss=quantile
        best = lowest(values) if compared and not metric.startswith(("coverage", "width")) else None
        rows.append({"metric": metric, "series": count(row.get("series")),
                     "cells": [(fmt(values[m], 4), m == best) for m in models]})
    return {"models": models, "rows": rows}


def window_row(window: dict) -> dict:
    c, t = window.get("counts") or {}, window.get("training") or {}
    cutoffs = " .. ".join(dict.fromkeys(str(s)[:10] for s in window.get("cutoffs") or [])) or "–"
    return {"window": window.get("window"), "hidden": count(window.get("hidden")), "cutoffs": cutoffs,
            **{k: count(c.get(k)) for k in ("series", "scored", "lstm_scored", "no_history", "non_finite_actual",
                                             "rejected")},
            "epochs": count(t.get("epochs")), "best_val_loss": fmt(t.get("best_val_loss"), 4),
            # the window's statistical partner; none recorded by a backtest from before model.statistical
            "partner": partner_name(chosen) if (chosen := recorded(t.get("statistical"))) else "–",
            # what its intervals were calibrated on; none recorded by a backtest from before the choice
            "intervals": (f"on {source}" if (source := window_intervals(window.get("intervals"))) else
                          "validation window" if window.get("intervals") else "–")}


def by_window_plot(windows: list[dict], models: list[str]):
    rows = [{"window": w.get("window"), **{m: number(((w.get("metrics") or {}).get("mase") or {}).get(m))
                                           for m in models}} for w in windows[:MAX_ROWS]]
    if not rows or not models:
        return None
    frame = pd.DataFrame(rows).astype({m: float for m in models})
    return Markup(plots.metric_by_window(frame, models, "MASE", key="backtest-windows"))


def distribution(final: Location, models: list[str]):
    """Box plots of the per-series MASE of each model over all windows (series.parquet, MASE rows only)."""
    try:
        dataset = pads.dataset(final.join("series.parquet").path, filesystem=final.fs, format="parquet")
        present = [m for m in models if m in dataset.schema.names]
        table = dataset.to_table(columns=present, filter=pc.field("metric") == "mase")
    except (OSError, ValueError):
        return None
    values = {m: v[np.isfinite(v)] for m in present
              for v in [table[m].to_numpy(zero_copy_only=False).astype(float)]}
    if not any(len(v) for v in values.values()):
        return None
    return Markup(plots.metric_distribution(values, "MASE", key="backtest-distribution"))


def skipped(final: Location, windows: list[dict]) -> dict:
    reasons: dict[str, int] = {}
    for w in windows:
        c = w.get("counts") or {}
        for key in ("no_history", "non_finite_actual"):
            reasons[key] = reasons.get(key, 0) + int(c.get(key) or 0)
        for key, n in (c.get("reject_reasons") or {}).items():
            reasons[key] = reasons.get(key, 0) + int(n or 0)
    reasons = {k: v for k, v in reasons.items() if v}
    try:
        dataset = pads.dataset(final.join("skipped.parquet").path, filesystem=final.fs, format="parquet")
        head = dataset.head(MAX_ROWS).to_pylist()
    except (OSError, ValueError):
        head = []
    rows = [{"id": clip(str(r.get("unique_id"))), "window": r.get("window"), "reason": clip(str(r.get("reason"))),
             "detail": clip(str(r.get("detail") or ""))} for r in head]
    return {"reasons": bar_rows(reasons, sum(reasons.values())), "rows": rows, "total": count(sum(reasons.values()))}
