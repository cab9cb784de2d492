"""Model specs for unit tests, built the way the job builds them: from the default config."""

from __future__ import annotations

import dataclasses

from forecaster.config import load_config
from forecaster.spec import ModelSpec


def model_spec(*overrides: str, **fields) -> ModelSpec:
    """`ModelSpec.from_config` of the default config with `overrides` ("model.hidden_size=8"), then
    `fields` replaced (e.g. features=FeatureSpec() for a hand-made SeriesBlock without covariates)."""
    return dataclasses.replace(ModelSpec.from_config(load_config(None, list(overrides))), **fields)


SMALL = ("model.input_size=8", "model.hidden_size=8", "model.num_layers=1", "model.dropout=0")


def job_settings(data, out, date: str, horizon: int, *overrides: str, freq: str = "MS") -> list[str]:
    """A job's `--set` values: the contract's keys (data.uri, data.freq, model.horizon, output.uri,
    run.date), then `overrides`, later ones winning."""
    return [f"data.uri={data}", f"data.freq={freq}", f"model.horizon={horizon}", f"output.uri={out}",
            f"run.date={date}", *overrides]


def job_config(data, out, date: str, horizon: int, *overrides: str, freq: str = "MS"):
    """The Config of `job_settings`, as the command line builds it."""
    return load_config(None, job_settings(data, out, date, horizon, *overrides, freq=freq))


def run_command(settings: list[str]) -> list[str]:
    """`forecaster run` arguments (for forecaster.cli.main) of `job_settings`."""
    return ["run", *(arg for setting in settings for arg in ("--set", setting))]
