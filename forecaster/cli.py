"""`forecaster run [--config FILE] [--set key=value ...]`, `forecaster backtest --windows K [--step S] ...`,
`forecaster tune` (search hyperparameters, write the best config), `forecaster report [--backtest]` (rebuild
the HTML report of run.date from storage) and `forecaster config` (print the keys)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys

from forecaster.config import Config, ConfigError, load_config
from forecaster.console import drop_false_alarms, setup_logging, show_progress, verbose
from forecaster.read import DataError
from forecaster.storage import StorageError

log = logging.getLogger("forecaster")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="forecaster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    commands = (("run", "run the nightly job once"), ("config", "print the resolved config"),
                ("tune", "search hyperparameters with Ray Tune (ASHA) and write the best config"),
                ("backtest", "rolling-origin evaluation: train and forecast at K cutoffs (K trainings)"),
                ("report", "rebuild the HTML report of run.date from what the run stored (no Ray)"))
    for name, text in commands:
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", help="YAML config file")
        p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config key, e.g. --set model.horizon=18 (repeatable)")
        p.add_argument("-v", "--verbose", action="store_true",
                       help="show Ray's own log lines too (ray.log_level=INFO; an explicit --set wins)")
        if name == "config":
            p.add_argument("--reference", action="store_true",
                           help="print every key with its default and meaning as a Markdown table")
        if name == "tune":
            p.add_argument("--trials", type=int, help="trials to sample (overrides tune.trials)")
            p.add_argument("--out", default="best.yaml",
                           help="where to write the best config, a YAML file for run --config (default best.yaml)")
        if name == "backtest":
            p.add_argument("--windows", type=int, required=True, metavar="K", help="number of cutoffs")
            p.add_argument("--step", type=int, metavar="S", help="points between cutoffs (default model.horizon)")
        if name == "report":
            p.add_argument("--backtest", action="store_true",
                           help="the report of `forecaster backtest` for run.date instead of the run's")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        trials = [f"tune.trials={args.trials}"] if getattr(args, "trials", None) is not None else []
        loud = ["ray.log_level=INFO"] if args.verbose else []
        cfg = load_config(args.config, loud + args.overrides + trials)
        if args.command in ("run", "tune", "backtest") and not verbose(cfg.ray.log_level):
            with drop_false_alarms():  # Ray's C++ false alarms, see forecaster/console.py
                setup_logging(cfg.ray.log_level)
                return _command(args, cfg)
        setup_logging(cfg.ray.log_level)
        return _command(args, cfg)
    except (ConfigError, DataError, StorageError) as exc:
        print(f"forecaster: error: {exc}", file=sys.stderr)
        return 2


def _command(args: argparse.Namespace, cfg: Config) -> int:
    if args.command == "config":
        if args.reference:
            print("| key | default | meaning |\n| --- | --- | --- |")
            for key, default, text in config_reference():
                print(f"| `{key}` | `{default!r}` | {text.replace('|', '/')} |")
        else:
            print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if args.command == "tune":
        return _tune(cfg, args.out)
    if args.command == "backtest":
        return _backtest(cfg, args.windows, args.step)
    if args.command == "report":
        return _report(cfg, args.backtest)
    return _run(cfg)


def _run(cfg: Config) -> int:
    from forecaster.manifest import summary_lines
    from forecaster.pipeline import run

    with show_progress(sys.stdout):
        manifest = run(cfg)
    print("\n".join(summary_lines(manifest)))
    return 0


def _tune(cfg: Config, out: str) -> int:
    from forecaster.tune import TuneError, summary_lines, tune, write_config

    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):  # found out now, not after the search
        raise ConfigError(f"--out {out}: the directory {os.path.dirname(os.path.abspath(out))} does not exist")
    try:
        outcome = tune(cfg)
    except TuneError as exc:
        print(f"forecaster tune: {exc}", file=sys.stderr)
        return 1
    best = outcome.best
    write_config(outcome.best_config, out, header=(
        f"written by forecaster tune: trial {best.trial_id} of {outcome.experiment_uri}, val_loss "
        f"{best.best_val_loss:.4f}\ndata.storage_options and run.date are left out"))
    print("\n".join(summary_lines(outcome)))
    print(f"best config written to {out}")
    return 0


def _backtest(cfg: Config, windows: int, step: int | None) -> int:
    from forecaster.backtest import backtest, summary_lines

    print("\n".join(summary_lines(backtest(cfg, windows, step))))
    return 0


def _report(cfg: Config, backtest: bool) -> int:
    import time

    from forecaster.report import write_report
    from forecaster.report_backtest import write_backtest_report

    started = time.perf_counter()
    loc = write_backtest_report(cfg) if backtest else write_report(cfg)
    print(f"report: {loc.uri} (built in {time.perf_counter() - started:.1f} s)")
    return 0


def config_reference() -> list[tuple[str, object, str]]:
    """(key, default, help) for every config key, from the fields' metadata (forecaster.config.setting)."""
    from forecaster.config import keys

    return [(key, f.default if f.default is not dataclasses.MISSING else f.default_factory(), f.metadata["help"])
            for key, f in keys()]
