"""Prediction intervals of `forecast`, calibrated on the validation window (split conformal).

Training holds out the last `horizon` points of every series. At each epoch the loop forecasts them
and collects, per horizon step k, the absolute errors of `forecast` in each series' unit: |y - f| / unit.
The errors of all series go into a histogram with log-spaced bins, summed over the ranks (exact to a
bin's width, 1.2 %, whatever the number of series); the checkpoint keeps, for each level L of
model.levels and each step k, the L % quantile q[L, k] of the best epoch's errors, and the rule of the
unit they were measured in. The predictor then writes

    forecast-lo-L = forecast - q[L, k] * unit      forecast-hi-L = forecast + q[L, k] * unit

The unit (model.interval_unit, units()):
- `spread`, the default: the series' MASE scale (the in-sample MAE of seasonal naive up to the cutoff)
  plus SPREAD_WEIGHT times the spread of its models' forecasts (the population standard deviation of
  the LSTM's, Theta's, DampedTrend's and SES's forecasts at each step, averaged over the steps:
  SPREAD_METHODS).
  Where the models disagree the future is harder to call, and the interval widens with it: a
  normalised nonconformity score (Papadopoulos et al., "Normalized nonconformity measures for
  regression conformal prediction", 2008) that follows a window's difficulty where the MASE scale,
  fixed by the history, cannot.
- `mase`: the MASE scale alone (every checkpoint from before the rule was recorded).

A series too short for the network (fewer than validate.min_length points) is forecast by the
statistical partner alone, from a few points: its errors are not the validated series'. They are
calibrated apart (Mondrian conformal, by length): for each group of lengths (short_groups: 2, 3,
4-5, 6-7, 8-11, ... points, up to min_length), each validated series' training part is cut to its
last few points, a length in the group, the partner is fitted on them alone and its errors on the
validation window, in the unit made from those points, go into the group's histogram
(short_histograms). The checkpoint keeps each group's quantiles, and a short series draws its
interval from its group's (Calibration.table), or from the nearest shorter group's where its own had
too few errors for the highest level (enough()). Drawn from the validated series' quantiles instead,
the short series' 80 % intervals covered 51-81 % of the next window's points on M1's training parts
(docs/benchmarks.md).

Calibrated on realised errors (model.interval_calibration=realised, the default). The validation
window's errors are not quite the errors of a forecast: training chose its epoch, its partner and
its weights on that window, so its errors run small, and the intervals with them (on M1's yearly
test set the 80 % interval covered 76 %). Each run's scores stage already joins the forecasts of
earlier runs under output.uri with the actuals that have arrived since; score.realised_errors sums,
per step, the error_histogram of those earlier `forecast`s on the series the network forecast, in
the same unit the predictor draws in (the MASE scale up to that forecast's cutoff, the spread of its
own columns), over the newest score.max_origins earlier cutoffs (the newest date of each). Each step
with enough_steps() errors takes its quantiles from them (realised_record, in the manifest's
`intervals`); the other steps, and the series too short for the network, keep the checkpoint's.
These are honest out-of-sample errors, of models chosen without seeing them (conformal prediction on
a rolling origin, as in Stankeviciute et al., "Conformal time-series forecasting", 2021). On M1's
training parts, with one earlier run a horizon before, the 80 % intervals covered 81.9 / 72.7 /
84.4 % of the next horizon's points (monthly / quarterly / yearly, seed 0; the validation window's
85.5 / 73.4 / 86.5 %) at a 2 % lower interval score on average over both seeds; docs/benchmarks.md
has the backtest and the test sets.

Intervals are symmetric and assume the next `horizon` steps err like the held-out ones did in these
units (exchangeability across series, the split-conformal assumption); forecaster backtest and the
scores table report how often they covered.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from forecaster.columns import DAMPED, SES, THETA
from forecaster.config import INTERVAL_UNITS
from forecaster.evaluate import holdout_actual, mase_scale
from forecaster.features import SeriesBlock
from forecaster.theta import SEASONALITY_LEVEL, STATISTICAL, floor_series, floored, partner, statistical
from forecaster.validate import min_length

# bins of scaled absolute errors: [0, 1e-3), then 1200 log-spaced bins up to 1e3, then [1e3, inf)
EDGES = np.concatenate([[0.0], np.logspace(-3, 3, 1201)])
BINS = len(EDGES)  # the last bin holds everything from EDGES[-1] on

LEGACY_UNIT = "mase"  # the unit of a calibration that names none (checkpoints from before the rule was kept)
# the spread's weight in the unit, chosen among 1, 2 and 4 on M1's training parts (docs/benchmarks.md)
SPREAD_WEIGHT = 1.0
# the statistical methods whose forecasts, with the LSTM's, make the spread: those the rule was chosen with.
# The optimised Theta, added later, is not one: with it every checkpoint's quantiles would be in another unit.
SPREAD_METHODS = (THETA, DAMPED, SES)


def members(methods: dict[str, np.ndarray], lstm: np.ndarray | None = None) -> list[np.ndarray]:
    """The forecasts (each (series, horizon)) whose spread() widens the `spread` unit: the LSTM's, where
    there is one, and SPREAD_METHODS' of `methods` (theta.statistical's)."""
    return ([] if lstm is None else [lstm]) + [methods[name] for name in SPREAD_METHODS]


def spread(members: Sequence[np.ndarray]) -> np.ndarray:
    """(series,) how far the models' forecasts (each (series, horizon); NaN where a model has none, e.g.
    the LSTM on a series too short for it) lie apart: the population standard deviation across them at
    each step (0 where one model forecast), averaged over the steps a model forecast; 0 for a series
    no model forecast."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps (or series) no model forecast: NaN, then 0
        return np.nan_to_num(np.nanmean(np.nanstd(np.stack(members), axis=0), axis=1), nan=0.0)


def units(scale: np.ndarray, members: Sequence[np.ndarray], rule: str) -> np.ndarray:
    """(series,) the unit of each series' errors and interval widths under `rule` (config.INTERVAL_UNITS:
    the config's choices check it, read() a checkpoint's): its MASE `scale` (evaluate.mase_scale), plus
    SPREAD_WEIGHT x the spread() of the models' forecasts `members` (members(): the LSTM's and those of
    SPREAD_METHODS) for `spread`. NaN where the scale is not positive: a flat history, or
    one too short for a difference, scales no interval."""
    scale = np.where(scale > 0, scale, np.nan)
    return scale if rule == "mase" else scale + SPREAD_WEIGHT * spread(members)


def error_histogram(actual: np.ndarray, forecast: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Counts (horizon, BINS) of |actual - forecast| / unit per step, over the series and steps where
    all three are finite."""
    return histogram(np.abs(actual - forecast) / unit[:, None])


def histogram(errors: np.ndarray) -> np.ndarray:
    """Counts (horizon, BINS) of (series, horizon) scaled errors per step, over the finite ones."""
    horizon = errors.shape[1]
    counts = np.zeros((horizon, BINS))
    for step in range(horizon):
        column = errors[:, step]
        column = column[np.isfinite(column)]
        counts[step] = np.bincount(np.searchsorted(EDGES, column, side="right") - 1, minlength=BINS)
    return counts


def quantiles(counts: np.ndarray, levels: tuple[int, ...] | list[int]) -> np.ndarray | None:
    """(levels, horizon) conformal quantiles from a summed `error_histogram`: for n errors, the upper
    edge of the bin holding the ceil((n + 1) L / 100)-th smallest (the split-conformal rank), so that
    a new error falls below it with probability at least L %. None without errors to calibrate on."""
    n = counts.sum(axis=1)
    if not len(levels) or (n <= 0).any():
        return None
    cumulative = np.cumsum(counts, axis=1)
    upper = np.append(EDGES[1:], np.inf)  # upper edge of each bin
    out = np.empty((len(levels), counts.shape[0]))
    for i, level in enumerate(levels):
        rank = np.minimum(np.ceil((n + 1) * level / 100.0), n)
        index = np.array([np.searchsorted(cumulative[k], rank[k]) for k in range(len(n))])
        out[i] = upper[index]
    return out


def bounds(forecast: np.ndarray, unit: np.ndarray, quantile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi), each (series, horizon), of one level's interval around `forecast` from its quantiles,
    (horizon,) for every series or per series (Calibration.table); NaN where the series has no unit."""
    width = quantile * unit[:, None]
    return forecast - width, forecast + width


def short_groups(horizon: int) -> np.ndarray:
    """The edges of the length groups a series too short for the network is calibrated in: [2, 3), [3, 4),
    [4, 6), [6, 8), [8, 12), [12, 16), [16, 24), ..., the last group closed at
    validate.min_length(horizon). Each edge is twice the one two before it, so that the shortest
    lengths, where one point more changes the errors most, have a group each. A series of one point
    has no MASE scale, and so no interval."""
    limit, edges = min_length(horizon), [2, 3]
    while edges[-1] < limit:
        edges.append(2 * edges[-2])
    return np.array([*(e for e in edges if e < limit), limit])


def short_histograms(block: SeriesBlock, horizon: int, season: int, method: str, rule: str,
                     nonnegative: str, level: float = SEASONALITY_LEVEL) -> np.ndarray:
    """Counts (groups, horizon, BINS): for each group [lo, hi) of short_groups(horizon), the
    error_histogram of the partner `method` (a model.statistical value) alone, floored as `forecast` is
    (model.nonnegative), on the validation window of `block`'s series, fitted on the last few points of
    their training parts and in the unit of `rule` made from those points: series i is cut to
    lo + i mod (hi - lo) points, so that every length of the group is drawn, and one whose training
    part is shorter than that is left out of the group. `level`: the seasonality test's
    (model.seasonality_level)."""
    edges = short_groups(horizon)
    cutoffs = block.lengths - horizon
    actual = holdout_actual(block, horizon)
    counts = np.zeros((len(edges) - 1, horizon, BINS))
    rows = np.arange(len(block))
    names = tuple(dict.fromkeys((*SPREAD_METHODS, *STATISTICAL[method])))  # the spread's methods and the partner's
    for group, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        length = lo + rows % (hi - lo)
        fits = np.flatnonzero(cutoffs >= length)
        if not len(fits):
            continue
        cut = block.tails(fits, cutoffs[fits], length[fits])
        methods = statistical(cut, cut.lengths, horizon, season, names, level)
        unit = units(mase_scale(cut, cut.lengths, season), members(methods), rule)
        forecast = floored(partner(methods, method), floor_series(cut, cut.lengths, nonnegative))
        counts[group] = error_histogram(actual[fits], forecast, unit)
    return counts


def enough_steps(counts: np.ndarray, levels: tuple[int, ...] | list[int]) -> np.ndarray:
    """(horizon,) whether an error_histogram holds, at each step, the n errors the highest of `levels`
    needs for its conformal rank ceil((n + 1) L / 100) to fall within them (n >= L / (100 - L): 19 for
    95 %, 4 for 80 %); with fewer, quantiles() can only return the largest error, which covers less than
    L % of new ones."""
    top = max(levels)
    return counts.sum(axis=1) >= top / (100 - top)


def enough(counts: np.ndarray, levels: tuple[int, ...] | list[int]) -> bool:
    """Whether an error_histogram holds enough_steps() errors at every step."""
    return bool(enough_steps(counts, levels).all())


def short_record(counts: np.ndarray, levels: tuple[int, ...] | list[int], horizon: int) -> dict:
    """The calibration's `short` part from summed short_histograms (groups, horizon, BINS): the groups'
    edges and each group's quantiles() at `levels`; None for a group without enough() errors (a run
    whose validated series are too short to be cut to its lengths, or too few)."""
    tables = [quantiles(group, levels) if enough(group, levels) else None for group in counts]
    return {"edges": short_groups(horizon).tolist(), "quantiles": [None if q is None else q.tolist() for q in tables]}


def record(quantiles: np.ndarray | None, levels: tuple[int, ...] | list[int], rule: str,
           short: dict | None = None) -> dict | None:
    """The checkpoint's calibration (TrainingState.calibration): the quantiles() at `levels`, the rule of
    the unit they are in and, where made, the short series' (short_record); None without quantiles."""
    if quantiles is None:
        return None
    out = {"levels": list(levels), "quantiles": quantiles.tolist(), "unit": rule}
    return out if short is None else {**out, "short": short}


@dataclass(frozen=True)
class Calibration:
    """A checkpoint's calibration, read: the quantiles of the series the network forecast, their unit's
    rule, and the short series' length groups (edges) and quantiles, where the checkpoint has them."""

    quantiles: dict[int, np.ndarray] = field(default_factory=dict)  # level -> (horizon,)
    unit: str = LEGACY_UNIT
    edges: np.ndarray = field(default_factory=lambda: np.zeros(0))  # short_groups' edges
    short: tuple[dict[int, np.ndarray] | None, ...] = ()  # per group: level -> (horizon,); None: no errors

    def table(self, level: int, lengths: np.ndarray) -> np.ndarray | None:
        """(series, horizon) quantiles of each series (of `lengths` points) at `level`: its length group's
        where it falls in a group (a series too short for the network), the nearest shorter calibrated
        group's where its own was not calibrated (errors from fewer points are larger: wider, not
        narrower); the validated series' elsewhere, below the first calibrated group and wherever the
        checkpoint has no groups (those from before they were kept). Where the level was not calibrated,
        (series, 1) NaN: no interval at any step."""
        if level not in self.quantiles:
            return np.full((len(lengths), 1), np.nan)
        out = np.tile(self.quantiles[level], (len(lengths), 1))
        group = np.searchsorted(self.edges, lengths, side="right") - 1  # -1, len(short): in no group
        shorter = None
        for g, table in enumerate(self.short):
            shorter = table if table is not None else shorter
            if shorter is not None:
                out[group == g] = shorter[level]
        return out


def read(calibration: dict | None) -> Calibration:
    """A checkpoint's calibration: one that names no unit was measured in the MASE scale (LEGACY_UNIT);
    one without short series' groups calibrates every series alike; none at all gives no quantiles. A
    unit this version cannot draw in (a checkpoint from a newer one) is refused here, once, by name."""
    if calibration is None:
        return Calibration()
    unit = calibration.get("unit", LEGACY_UNIT)
    if unit not in INTERVAL_UNITS:
        raise ValueError(f"the checkpoint's interval calibration is in unit {unit!r}, which this version cannot "
                         f"draw intervals in (it knows {', '.join(INTERVAL_UNITS)})")
    levels = calibration["levels"]

    def by_level(table) -> dict[int, np.ndarray]:
        return {level: np.asarray(row, dtype=float) for level, row in zip(levels, table, strict=True)}

    short = calibration.get("short") or {"edges": [], "quantiles": []}
    return Calibration(by_level(calibration["quantiles"]), unit,
                       np.asarray(short["edges"], dtype=np.int64),
                       tuple(None if q is None else by_level(q) for q in short["quantiles"]))


def realised_record(counts: np.ndarray, levels: tuple[int, ...] | list[int], rule: str,
                    origins: Sequence[str]) -> dict | None:
    """The calibration on realised errors (the manifest's `intervals.realised`, and what the predictor
    reads with read_realised): from the summed error_histogram (horizon, BINS) of earlier runs'
    `forecast` against the actuals that arrived since (score.realised_errors), measured in the unit of
    `rule`, the quantiles() at `levels` of each step with enough_steps() errors (null at the others,
    which keep the validation window's), the errors per step and the earlier forecast dates they came
    from (`origins`); None where no step has enough."""
    if not len(levels):
        return None
    ok = enough_steps(counts, levels)
    if not ok.any():
        return None
    table = np.full((len(levels), len(counts)), np.nan)
    table[:, ok] = quantiles(counts[ok], levels)
    return {"unit": rule, "levels": list(levels),
            "quantiles": [[None if np.isnan(q) else float(q) for q in row] for row in table],
            "errors": [int(n) for n in counts.sum(axis=1)], "origins": list(origins)}


def calibrated_steps(record: dict) -> list[int]:
    """The steps (1 for the first after the cutoff) a realised_record calibrated: every level has the same."""
    return [k + 1 for k, q in enumerate(record["quantiles"][0]) if q is not None]


@dataclass(frozen=True)
class Realised:
    """A realised_record, read: per level the (horizon,) quantiles, NaN at the steps it leaves to the
    validation window, in the unit of `unit`."""

    unit: str
    quantiles: dict[int, np.ndarray]


def read_realised(record: dict | None) -> Realised | None:
    """A realised_record as the predictor draws from it; None for none."""
    if record is None:
        return None
    return Realised(record["unit"], {level: np.array([np.nan if q is None else q for q in row], dtype=float)
                                     for level, row in zip(record["levels"], record["quantiles"], strict=True)})
