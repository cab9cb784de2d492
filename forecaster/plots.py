"""The HTML report's plots: matplotlib figures rendered as inline SVG text.

Each function takes plain data (lists, arrays, DataFrames) and returns an `<svg>` element as a
string; no storage, no HTML around it. Text stays text in the SVG (`svg.fonttype=none`: smaller,
sharp at any zoom, set in the page's own font) and every figure gets its own id salt, so the
clip-path ids of two figures inlined in one page never collide. User strings (series ids) are never
drawn into a figure: matplotlib would read `$...$` in them as mathtext. The page's captions carry them.

Figures are `matplotlib.figure.Figure` objects, never pyplot's: no backend or GUI is chosen, nothing
global changes in the caller's process (matplotlib's advice for web servers), and a figure is freed
like any object.
"""

from __future__ import annotations

import io
import re

import matplotlib
import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from forecaster.columns import NAIVE, SEASONAL_NAIVE, STATISTICAL_METHODS

# One colour per model, the same in every plot of a report.
COLOURS = {"history": "#24292f", "actual": "#24292f", "forecast": "#0969da", "LSTM": "#8250df",
           "Theta": "#cf222e", "OptimizedTheta": "#953800", "DampedTrend": "#e16f24", "SES": "#bf3989",
           "SeasonalNaive": "#1a7f37", "Naive": "#bf8700",
           "no_fallback": "#57606a", "train": "#8c959f", "validation": "#0969da"}
_OTHER = ("#1b7c83", "#6e7781", "#4d2d00")
BASELINES = (*STATISTICAL_METHODS, SEASONAL_NAIVE, NAIVE)  # drawn in this order
BAND_ALPHA = (0.14, 0.26, 0.38)  # interval bands, widest (lightest) first

STYLE = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial", "sans-serif"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.edgecolor": "#d0d7de",
    "axes.labelcolor": "#424a53",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#eaeef2",
    "grid.linewidth": 0.8,
    "xtick.color": "#57606a",
    "ytick.color": "#57606a",
    "legend.frameon": False,
    "legend.fontsize": 8,
    "figure.dpi": 100,
}


def colour(model: str, index: int = 0) -> str:
    return COLOURS.get(model, _OTHER[index % len(_OTHER)])


def to_svg(fig, key: str) -> str:
    """The figure as an `<svg>` element (no XML prolog), with ids salted by `key`."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": key}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})  # constrained layout: no "tight" second draw
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    # fixed width/height in pt would stop the page from scaling the plot; the viewBox keeps its shape
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"', r'<svg\1 role="img"', text, count=1)


def _figure(width: float, height: float):
    """A figure of `width` x `height` inches with one axes; call it inside rc_context(STYLE)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _date_axis(ax) -> None:
    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def training_curve(history: list[dict], best_epoch: int | None, key: str = "training") -> str:
    """Train and validation loss per epoch, the best epoch marked."""
    with matplotlib.rc_context(STYLE):
        fig, ax = _figure(6.4, 2.8)
        frame = pd.DataFrame(history)
        for column, label in (("train_loss", "train loss"), ("val_loss", "validation loss")):
            if column in frame and frame[column].notna().any():
                name = "train" if column == "train_loss" else "validation"
                ax.plot(frame["epoch"], frame[column], marker="o", markersize=3, linewidth=1.8,
                        color=colour(name), label=label)
        if best_epoch is not None and "val_loss" in frame and (frame["epoch"] == best_epoch).any():
            best = float(frame.loc[frame["epoch"] == best_epoch, "val_loss"].iloc[0])
            ax.axvline(best_epoch, color="#cf222e", linewidth=1, linestyle=":")
            ax.plot([best_epoch], [best], marker="*", markersize=12, color="#cf222e", linestyle="none",
                    label=f"best epoch {best_epoch} (val {best:.4g})")
        losses = frame.drop(columns=["epoch"], errors="ignore").select_dtypes("number").to_numpy().ravel()
        losses = losses[np.isfinite(losses) & (losses > 0)]
        if len(losses) and losses.max() / losses.min() > 20:  # a first epoch far above the rest
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(loc="upper right")
        return to_svg(fig, key)


def series_forecast(history: pd.DataFrame | None, forecast: pd.DataFrame, intervals: list[tuple[str, str, str]],
                    key: str) -> tuple[str, list[tuple[str, str, str]]]:
    """One series: its history tail (ds, y), the `forecast`, the LSTM and the baselines as thin lines,
    and the interval bands (label, lo column, hi column; widest first) around the forecast.

    No legend in the figure (a page shows many of these side by side): returns the SVG and what it
    drew as (label, colour, style) for one legend in the page; style is line, thick, dashed or band-<i>.
    """
    drawn = []
    with matplotlib.rc_context(STYLE):
        fig, ax = _figure(5.4, 2.4)
        ds = forecast["ds"]
        for i, (label, lo, hi) in enumerate(intervals):
            ax.fill_between(ds, forecast[lo], forecast[hi], color=colour("forecast"), alpha=BAND_ALPHA[i % 3],
                            linewidth=0)
            drawn.append((label, colour("forecast"), f"band-{i % 3}"))
        if history is not None and len(history):
            ax.plot(history["ds"], history["y"], color=colour("history"), linewidth=1.4)
            ax.axvline(history["ds"].iloc[-1], color="#8c959f", linewidth=0.8, linestyle=":")
            drawn.append(("history", colour("history"), "line"))
        for model in ("LSTM", *BASELINES):
            if model in forecast and forecast[model].notna().any():
                dashed = model == "LSTM"
                ax.plot(ds, forecast[model], color=colour(model), linewidth=1.0, linestyle="--" if dashed else "-",
                        alpha=0.95)
                drawn.append((model, colour(model), "dashed" if dashed else "line"))
        if "forecast" in forecast:
            ax.plot(ds, forecast["forecast"], color=colour("forecast"), linewidth=2.2)
            drawn.append(("forecast", colour("forecast"), "thick"))
        _date_axis(ax)
        ax.set_xlabel("ds")
        ax.set_ylabel("y")
        return to_svg(fig, key), drawn


def scores_over_time(frame: pd.DataFrame, models: list[str], key: str = "scores") -> str:
    """MASE per origin date (x) per model (one line each): `frame` has `origin_date` and a column per model."""
    with matplotlib.rc_context(STYLE):
        fig, ax = _figure(9.0, 2.8)
        dates = pd.to_datetime(frame["origin_date"])
        for i, model in enumerate(models):
            if frame[model].notna().any():
                ax.plot(dates, frame[model], marker="o", markersize=3.5,
                        linewidth=2.2 if model == "forecast" else 1.2, color=colour(model, i), label=model)
        if len(dates) <= 8:  # few origins: a tick on each, labelled with its date
            ax.set_xticks(dates, [d.strftime("%Y-%m-%d") for d in dates])
            ax.grid(axis="x", visible=False)
        else:
            _date_axis(ax)
        ax.set_xlabel("forecast origin (forecast_date)")
        ax.set_ylabel("MASE (lower is better)")
        if ax.get_lines():
            ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)
        else:  # every origin's MASE undefined (e.g. flat histories): say so instead of an empty legend
            ax.text(0.5, 0.5, "no MASE defined for these origins", transform=ax.transAxes, ha="center")
        return to_svg(fig, key)


def metric_by_window(frame: pd.DataFrame, models: list[str], metric: str, key: str) -> str:
    """Grouped bars: the mean `metric` of each model (bars) per backtest window (groups)."""
    with matplotlib.rc_context(STYLE):
        fig, ax = _figure(7.5, 3.0)
        windows = list(frame["window"])
        width = 0.8 / max(len(models), 1)
        x = np.arange(len(windows))
        for i, model in enumerate(models):
            ax.bar(x + (i - (len(models) - 1) / 2) * width, frame[model], width=width * 0.92,
                   color=colour(model, i), label=model)
        ax.set_xticks(x, [f"window {w}" for w in windows])
        ax.grid(axis="x", visible=False)
        ax.set_xlabel("backtest window (oldest cutoff first)")
        ax.set_ylabel(f"mean {metric}")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2)
        return to_svg(fig, key)


def metric_distribution(values: dict[str, np.ndarray], metric: str, key: str) -> str:
    """Box plots of the per-series `metric` of each model (whiskers 5-95 %, no outlier points)."""
    with matplotlib.rc_context(STYLE):
        fig, ax = _figure(7.5, 3.0)
        models = [m for m, v in values.items() if len(v)]
        box = ax.boxplot([values[m] for m in models], whis=(5, 95), showfliers=False, patch_artist=True,
                         medianprops={"color": "#24292f"})
        for i, (patch, model) in enumerate(zip(box["boxes"], models, strict=True)):
            patch.set(facecolor=colour(model, i), alpha=0.35, edgecolor=colour(model, i))
        ax.set_xticks(np.arange(1, len(models) + 1), models)
        ax.grid(axis="x", visible=False)
        ax.set_xlabel("model")
        ax.set_ylabel(f"{metric} per series")
        return to_svg(fig, key)
