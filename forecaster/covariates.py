"""Inputs beyond the target: which covariates a model uses, calendar features, static encodings.

Kinds (all optional, named in the `data` section of the config):

    past      data.past_covariates     numeric input columns, seen over the input window only
    future    data.future_covariates   numeric columns known ahead (price, promotion): their history
                                       comes with the input, their values over the horizon from
                                       data.future_uri; seen over the input window and the horizon
    calendar  model.calendar=auto      features of each step's date for data.freq (month of year,
                                       day of week, ...): known ahead by construction
    static    data.static_covariates   one value per series (from the input or data.static_uri):
                                       text/integer/boolean columns are categories (hashed into a
                                       shared embedding table), float columns numbers

`FeatureSpec` says which of them a model was trained with; it is stored in the checkpoint so that
the predictor builds exactly the same inputs. numpy only; no Ray, no torch.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from forecaster.columns import STATIC

# calendar kind -> number of feature columns (sin/cos pairs), see calendar_features
CALENDAR_WIDTH = {None: 0, "month": 2, "quarter": 2, "week": 2, "day": 4, "hour": 4, "minute": 4}


@dataclass
class FeatureSpec:
    past: list[str] = field(default_factory=list)
    future: list[str] = field(default_factory=list)
    static_numeric: list[str] = field(default_factory=list)
    static_categorical: list[str] = field(default_factory=list)
    calendar: str | None = None  # a key of CALENDAR_WIDTH
    freq: str = "MS"  # data.freq, for the calendar
    static_buckets: int = 1024
    static_dim: int = 4

    @property
    def step_features(self) -> int:
        """Features per input step besides the scaled value and its mask."""
        return len(self.past) + len(self.future) + CALENDAR_WIDTH[self.calendar]

    @property
    def horizon_features(self) -> int:
        """Features per horizon step (known ahead): future covariates and calendar."""
        return len(self.future) + CALENDAR_WIDTH[self.calendar]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> FeatureSpec:
        return cls(**(values or {}))


def calendar_kind(freq: str, choice: str) -> str | None:
    """The calendar features that make sense for `freq` (none for yearly data or model.calendar=none)."""
    if choice == "none":
        return None
    name = type(pd.tseries.frequencies.to_offset(freq)).__name__
    if "Month" in name:
        return "month"
    if "Quarter" in name:
        return "quarter"
    if name == "Week":
        return "week"
    if name == "Day":
        return "day"
    if name == "Hour":
        return "hour"
    if name == "Minute":
        return "minute"
    return None  # yearly, business days, seconds ...: no calendar features


def calendar_anchor(first_ds: np.ndarray, kind: str | None, freq: str) -> tuple[np.ndarray, int]:
    """(anchor per series, step): each series' first timestamp and the size of one data.freq step,
    in months (monthly and quarterly data) or microseconds (weekly and finer).

    Step p of a series is then at `anchor + p * step` exactly: validate guarantees a regular grid.
    """
    ds = first_ds.astype("datetime64[us]")
    if kind is None:
        return np.zeros(len(ds), dtype=np.int64), 1
    offset = pd.tseries.frequencies.to_offset(freq)
    if kind in ("month", "quarter"):
        return ds.astype("datetime64[M]").astype(np.int64), offset.n * (3 if kind == "quarter" else 1)
    width = pd.Timedelta(days=7 * offset.n) if kind == "week" else pd.Timedelta(offset)
    return ds.astype(np.int64), int(width / pd.Timedelta(microseconds=1))


def calendar_features(when: np.ndarray, kind: str | None) -> np.ndarray:
    """(...,) step times from calendar_anchor's units -> (..., CALENDAR_WIDTH[kind]) sin/cos
    encodings of the position in each cycle (year, week, day)."""
    if kind is None:
        return np.zeros(when.shape + (0,))
    if kind in ("month", "quarter"):
        cycles = [(when % 12, 12)]  # month of year; quarterly data sees months 0, 3, 6, 9
    else:
        day = when // 86_400_000_000
        day_of_week = (day + 3) % 7  # 1970-01-01 was a Thursday: Monday = 0
        dates = day.astype("datetime64[D]")
        day_of_year = (dates - dates.astype("datetime64[Y]").astype("datetime64[D]")).astype(np.int64)
        if kind == "week":
            cycles = [(day_of_year, 365.25)]
        elif kind == "day":
            cycles = [(day_of_week, 7), (day_of_year, 365.25)]
        else:  # hour, minute: time of day and day of week
            cycles = [((when % 86_400_000_000) / 3_600_000_000, 24), (day_of_week, 7)]
    parts = []
    for position, length in cycles:
        angle = 2 * np.pi * position / length
        parts += [np.sin(angle), np.cos(angle)]
    return np.stack(parts, axis=-1)


def future_dates(last: np.ndarray, horizon: int, freq: str) -> np.ndarray:
    """(series, horizon) datetime64[us]: the `horizon` dates after each last date, computed once
    per distinct last date."""
    offset = pd.tseries.frequencies.to_offset(freq)
    unique, inverse = np.unique(last, return_inverse=True)
    table = np.stack([
        pd.date_range(pd.Timestamp(u), periods=horizon + 1, freq=offset)[1:].to_numpy().astype("datetime64[us]")
        for u in unique
    ]) if len(unique) else np.zeros((0, horizon), dtype="datetime64[us]")
    return table[inverse.reshape(-1)]


def static_numeric(column: pa.Array) -> np.ndarray:
    """Signed log1p of a numeric static column: no statistics to fit, heavy tails tamed."""
    x = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return np.sign(x) * np.log1p(np.abs(x))


def static_buckets(column: pa.Array, name: str, buckets: int) -> np.ndarray:
    """Hash bucket of each value of a categorical static column (stable across runs and processes:
    crc32 of "name=value", not Python's salted hash), so no vocabulary has to be fitted or stored."""
    encoded = pc.dictionary_encode(pc.cast(column, pa.string()), null_encoding="encode")
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    table = np.array([zlib.crc32(f"{name}={value}".encode()) % buckets for value in encoded.dictionary.to_pylist()],
                     dtype=np.int64)
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return table[codes] if len(table) else np.zeros(len(codes), dtype=np.int64)


def is_categorical(typ: pa.DataType) -> bool:
    return not (pa.types.is_floating(typ) or pa.types.is_decimal(typ))


def feature_spec(cfg, schema: pa.Schema | None = None) -> FeatureSpec:
    """The FeatureSpec of a config; `schema` (of the series rows) tells numeric from categorical statics."""
    types = {name[len(STATIC):]: schema.field(name).type for name in (schema.names if schema else [])
             if name.startswith(STATIC)}
    statics = list(cfg.data.static_covariates)
    missing = [name for name in statics if name not in types]
    if missing:
        raise ValueError(f"series rows lack the static columns {missing} (data.static_covariates)")
    return FeatureSpec(
        past=list(cfg.data.past_covariates),
        future=list(cfg.data.future_covariates),
        static_numeric=[n for n in statics if not is_categorical(types[n])],
        static_categorical=[n for n in statics if is_categorical(types[n])],
        calendar=calendar_kind(cfg.data.freq, cfg.model.calendar),
        freq=cfg.data.freq,
        static_buckets=cfg.model.static_buckets,
        static_dim=cfg.model.static_embedding_dim,
    )
