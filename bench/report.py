"""Report: build time and size of the HTML report of a stored run of N series (no Ray, no model).

    .venv/bin/python bench/report.py [--series 1000 100000] [--rejects 100000] [--origins 60]

For each N, `forecaster.synthetic.stored_run` writes a made-up run (forecasts and rejects partitions,
a manifest with every key the report reads) into a temporary directory; then `forecaster report` runs
as a subprocess, as a user would run it. Prints the wall time of the command (Python start and
imports included), the time `write_report` itself took, and the size of the page.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from forecaster.synthetic import stored_run

HERE = os.path.dirname(os.path.abspath(__file__))
CLI = os.path.join(os.path.dirname(sys.executable), "forecaster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--rejects", type=int, default=100_000)
    parser.add_argument("--origins", type=int, default=60)
    parser.add_argument("--horizon", type=int, default=18)
    args = parser.parse_args()
    print(f"{'series':>9} {'rejects':>9} {'origins':>8} {'stored MB':>10} {'command s':>10} {'build s':>8} "
          f"{'report kB':>10}")
    for n in args.series:
        with tempfile.TemporaryDirectory() as out:
            stored_run(out, n_series=n, n_rejects=args.rejects, n_origins=args.origins, horizon=args.horizon)
            stored = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(out) for f in files)
            started = time.perf_counter()
            done = subprocess.run([CLI, "report", "--set", f"output.uri={out}", "--set", "run.date=2026-01-01"],
                                  capture_output=True, text=True, check=True)
            command = time.perf_counter() - started
            build = next(line.split("built in ")[1].split(" s")[0] for line in done.stdout.splitlines()
                         if "built in" in line)
            size = os.path.getsize(os.path.join(out, "reports", "forecast_date=2026-01-01.html"))
            print(f"{n:>9,} {args.rejects:>9,} {args.origins:>8} {stored / 1e6:>10.1f} {command:>10.1f} "
                  f"{float(build):>8.1f} {size / 1e3:>10.0f}")


if __name__ == "__main__":
    main()
