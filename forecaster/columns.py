"""The column vocabulary: every column name that passes between the steps, written once (GluonTS's
`FieldName` is the model). The names of the user's input columns are config (data.id_col, ...);
read renames them to ID, DS and Y.
"""

from __future__ import annotations

import re

import pyarrow as pa

# ---- a series row: read -> validate -> train / predict (one row per series) -------------------------
ID = "unique_id"  # the series id, a string after read
DS = "ds"  # list<timestamp[us]>: the series' timestamps, sorted (validate drops it; see FIRST_DS, LAST_DS)
Y = "y"  # list<float64>: its values (NaN where missing)
FIRST_DS = "first_ds"  # timestamp of the first point
LAST_DS = "last_ds"  # timestamp of the last point: the forecast's cutoff
LENGTH = "length"  # number of points
# what validate adds: null for a clean series
REJECT_REASON = "reject_reason"
REJECT_DETAIL = "reject_detail"
# covariates travel as columns named with these prefixes (forecaster.covariates); they never clash
PAST, FUTURE, STATIC, HORIZON = "past:", "future:", "static:", "horizon:"

# the series row after validate (covariate columns besides); train and predict read these
SERIES_SCHEMA = pa.schema([(ID, pa.string()), (Y, pa.list_(pa.float64())), (FIRST_DS, pa.timestamp("us")),
                           (LAST_DS, pa.timestamp("us")), (LENGTH, pa.int64())])
VALIDATION_SCHEMA = pa.schema([(REJECT_REASON, pa.string()), (REJECT_DETAIL, pa.string())])

# ---- the forecasts table: predict -> write (neuralforecast's naming) -------------------------------
CUTOFF = "cutoff"  # the last observed timestamp the forecast starts after
LSTM = "LSTM"  # the network's point forecast (the median for loss=quantile)
NAIVE, SEASONAL_NAIVE, THETA = "Naive", "SeasonalNaive", "Theta"  # baselines, for every series
DAMPED = "DampedTrend"  # damped-trend exponential smoothing, a baseline too (forecaster/theta.py)
SES = "SES"  # simple exponential smoothing, likewise
OPTIMIZED_THETA = "OptimizedTheta"  # the optimised Theta method (statsforecast's name), likewise
FORECAST = "forecast"  # the value users are told to use
MODEL = "model"  # which model made `forecast`: LSTM+OptimizedTheta+DampedTrend, LSTM+Theta+SES, LSTM, ... (predict.py)
# the statistical methods' columns (forecaster/theta.py), in the table's order: every list of models that
# shows or scores them (validation, backtest, report, console, plots) takes them from here
STATISTICAL_METHODS = (THETA, DAMPED, SES, OPTIMIZED_THETA)
BASELINES = (NAIVE, SEASONAL_NAIVE, *STATISTICAL_METHODS)
INTERVAL = re.compile(r"^(?P<model>.+)-(?P<side>lo|hi)-(?P<level>\d+(?:\.\d+)?)$")


def interval(model: str, side: str, level: int | float) -> str:
    """`LSTM-lo-80`: the bound on `side` (lo or hi) of `model`'s `level` % interval."""
    return f"{model}-{side}-{level}"


def forecast_schema(levels: tuple[int, ...] | list[int] = (),
                    forecast_levels: tuple[int, ...] | list[int] = ()) -> pa.Schema:
    """Columns of the forecasts table: the LSTM's own interval bounds for `levels` (loss=quantile), the
    calibrated intervals of `forecast` for `forecast_levels` (model.levels, forecaster.intervals)."""
    def bounds(model: str, of: tuple[int, ...] | list[int]) -> list[tuple[str, pa.DataType]]:
        return [(interval(model, side, level), pa.float64()) for level in of for side in ("lo", "hi")]

    return pa.schema([(ID, pa.string()), (DS, pa.timestamp("us")), (LSTM, pa.float64()), *bounds(LSTM, levels),
                      *[(name, pa.float64()) for name in BASELINES], (FORECAST, pa.float64()),
                      *bounds(FORECAST, forecast_levels), (MODEL, pa.string()), (CUTOFF, pa.timestamp("us"))])


# ---- the rejects table: validate -> write -----------------------------------------------------------
REASON, DETAIL = "reason", "detail"
REJECT_SCHEMA = pa.schema([(ID, pa.string()), (REASON, pa.string()), (DETAIL, pa.string())])

# ---- every table under output.uri is partitioned by the run date ------------------------------------
FORECAST_DATE = "forecast_date"


def partition_name(forecast_date: str, suffix: str = "") -> str:
    """`forecast_date=2026-01-01`: a table's partition directory; with `suffix` (.json, .html) a file of
    one date (a manifest, a report)."""
    return f"{FORECAST_DATE}={forecast_date}{suffix}"


def partition_date(name: str, suffix: str = "") -> str | None:
    """The date of a `partition_name(date, suffix)`, None for any other name."""
    prefix = f"{FORECAST_DATE}="
    if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix) + len(suffix):
        return name[len(prefix):len(name) - len(suffix)]
    return None
