"""Entry point for `ray job submit`: the nightly forecasting run.

    ray job submit --working-dir . -- python -m jobs.nightly --config configs/demo.yaml --set run.date=2026-01-01

Inside a submitted job RAY_ADDRESS is set, so the job joins the cluster instead of starting Ray.
"""

import sys

from forecaster.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["run", *sys.argv[1:]]))
