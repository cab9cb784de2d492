"""A small job with and without idle Ray worker processes: the demo, run by turns with each setting.

    flock /tmp/ray.lock .venv/bin/python bench/idle_workers.py [--config configs/demo.yaml] [--repeats 2]

Each run is the whole job (`forecaster run`, its own local Ray) on the demo's data with no report, once
with `ray.idle_workers=0` (the default: a worker exits a second after its last task) and once with one
idle worker per CPU of the local Ray (Ray's own default), by turns, `--repeats` times. Per
run it prints the manifest's stage timings, the seconds in epochs, what is not epochs, and the best
validation loss (equal in every run: the settings change no result, only when processes start); then
the mean of each setting against idle_workers=0.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile

from scale import measured  # bench/scale.py: a job run with the summed RSS / PSS of its process tree

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecaster.config import load_config  # noqa: E402
from forecaster.runtime import local_cpus  # noqa: E402

FORECASTER = pathlib.Path(sys.executable).parent / "forecaster"


def settings(config: str) -> dict[str, list[str]]:
    """The two settings compared: none idle, and one idle worker per CPU of the job's local Ray."""
    cpus = local_cpus(load_config(str(ROOT / config), []))
    return {f"idle_workers={n}": ["--set", f"ray.idle_workers={n}"] for n in (0, cpus)}


def run(config: str, out: pathlib.Path, extra: list[str]) -> dict:
    """The run's manifest, with the peak RSS and PSS (GiB) of its process tree added."""
    shutil.rmtree(out, ignore_errors=True)
    log = out.with_suffix(".log")
    _, sampler, code = measured([str(FORECASTER), "run", "--config", str(ROOT / config), "--set",
                                 f"output.uri={out}", "--set", "report.enabled=false", *extra], log)
    if code != 0:
        raise SystemExit(f"forecaster run failed ({code}):\n{log.read_text()[-4000:]}")
    manifest = json.loads(next((out / "manifests").glob("*.json")).read_text())
    return {**manifest, "peak_gib": (sampler.peak_rss / 2**30, sampler.peak_pss / 2**30)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="idle-workers-"))
    compared = settings(args.config)
    totals: dict[str, list[float]] = {name: [] for name in compared}
    epochs: dict[str, list[float]] = {name: [] for name in compared}
    try:
        for repeat in range(args.repeats):
            for name, extra in compared.items():
                manifest = run(args.config, work / "out", extra)
                timings, metrics = manifest["timings_s"], manifest["metrics"]
                in_epochs = sum(h["seconds"] for h in metrics["history"])
                totals[name].append(timings["total"])
                epochs[name].append(in_epochs)
                stages = "  ".join(f"{k} {v:.1f}" for k, v in timings.items() if k != "total")
                print(f"{name}, run {repeat + 1}: total {timings['total']:.1f} s, {len(metrics['history'])} epochs "
                      f"{in_epochs:.1f} s, not epochs {timings['total'] - in_epochs:.1f} s  [{stages}]  "
                      f"peak RSS {manifest['peak_gib'][0]:.2f} GiB, PSS {manifest['peak_gib'][1]:.2f} GiB  "
                      f"best val_loss {metrics['best_val_loss']:.6f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base_total = sum(totals["idle_workers=0"]) / args.repeats
    base_epochs = sum(epochs["idle_workers=0"]) / args.repeats
    for name in compared:
        total, in_epochs = sum(totals[name]) / args.repeats, sum(epochs[name]) / args.repeats
        print(f"{name}: mean total {total:.1f} s ({total / base_total:.2f}x), in epochs {in_epochs:.1f} s "
              f"({in_epochs / base_epochs:.2f}x)")


if __name__ == "__main__":
    main()
