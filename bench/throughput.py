"""Throughput: the Ray paths against bare PyTorch on the same model, shapes and data, in one run.

    .venv/bin/python bench/throughput.py [--train-series 2000] [--infer-series 100000] [--gpu]

Training: windows/s of the Ray Train loop (steady state: the loop's own per-epoch timing, after a
warm-up epoch) and of a bare single-process loop that cuts the same windows from the same series
and steps the same model with the same batch size and the same number of threads. Ray Train's
fixed start-up is printed separately.

Inference: series/s of the Ray Data path (read Parquet + validate + predict + write Parquet) and of
the bare predictor against the limit, the network's forward pass alone on the same windows at the
paths' precision (predict.precision, bf16 by default; the other precision is printed for comparison);
the Ray path against the bare predictor: the same
`SeriesPredictor` (windows, forward, un-scale, baselines, validation fallback) called in one process
on blocks already in memory. The start-up of the Ray Data path (actor start, model load) is measured
on a tiny input and printed separately; the rate is (N series) / (wall time - start-up). The wall
time of each Ray stage is printed too. A first run on the whole input (printed as the cold run)
starts Ray's worker processes; before each later run the bench waits for the previous run's actors
to go and starts a worker process per CPU again (`settle`).

The bare predictor does not read, group, validate or write. The bench runs those steps in one
process on the same files and forecasts (the same functions the Ray path maps over its blocks) and
prints their CPU-seconds E, and the rate N / (bare seconds + E / C) of a path that predicted at the
bare rate and spread those steps perfectly over C cores: the ratio that such a path would reach.
(The Ray path can beat it: its two one-thread actors run the predictor's numpy work on both cores,
which the bare process runs on one.) It also prints the ceiling of any path that reads, validates and
writes: N / (N / forward + E / C), a predictor that cost nothing but its forward pass, with those
steps spread perfectly over the cores; against the forward pass alone, that ceiling is what this
machine allows whatever the predictor and Ray do.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forecaster import checkpoint as checkpoint_format  # noqa: E402
from forecaster.columns import DS, ID, Y  # noqa: E402
from forecaster.config import load_config  # noqa: E402
from forecaster.features import forecast_windows  # noqa: E402
from forecaster.model import build_model  # noqa: E402
from forecaster.pipeline import clean_series, predict, predictor_options, validate_options, validate_series  # noqa: E402
from forecaster.predict import SeriesPredictor  # noqa: E402
from forecaster.read import read_series, rows_to_series  # noqa: E402
from forecaster.runtime import init_ray  # noqa: E402
from forecaster.spec import LoopSettings, ModelSpec  # noqa: E402
from forecaster.synthetic import seasonal_series  # noqa: E402
from forecaster.train import fit, minibatches, run_spec, train_epoch, weight_average  # noqa: E402
from forecaster.validate import validate_batch  # noqa: E402


def write_series(directory: pathlib.Path, n_series: int, files: int, seed: int = 0) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    per_file = -(-n_series // files)
    for i in range(files):
        count = min(per_file, n_series - i * per_file)
        if count <= 0:
            break
        table = seasonal_series(count, 120, seed=seed + i, id_prefix=f"f{i}-")
        pq.write_table(table, directory / f"part-{i:04d}.parquet")


def bare_training(cfg, clean, threads: int, epochs: int) -> float:
    """Windows/s of the job's own epoch (train.train_epoch: windows, steps, weight average) in this
    process, without Ray Train: same model, batch size, threads, device and precision; the batches of
    series rows are read before the clock starts (their blocks are built in the epoch, as in the loop)."""
    torch.set_num_threads(threads)
    device = torch.device("cuda" if cfg.train.use_gpu else "cpu")
    spec, settings = run_spec(cfg, clean), LoopSettings.from_config(cfg)
    torch.manual_seed(0)
    model = build_model(spec).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    ema = weight_average(model, settings.ema_decay)
    rng = np.random.default_rng(0)
    batches = list(clean.iter_batches(batch_size=settings.series_per_block, batch_format="pyarrow"))
    timings = []
    for _ in range(epochs):
        started = time.perf_counter()
        _, windows = train_epoch(model, optimizer, minibatches(batches, spec, settings, rng, settings.batch_size),
                                 spec, settings, device, ema)
        timings.append(windows / (time.perf_counter() - started))
    return float(np.median(timings[1:] if len(timings) > 1 else timings))


def ray_training(cfg, clean) -> tuple[float, float]:
    """(steady windows/s, start-up seconds) of the Ray Train loop."""
    started = time.perf_counter()
    result = fit(cfg, clean)
    wall = time.perf_counter() - started
    history = [m for m in (result.metrics_dataframe.to_dict("records") if result.metrics_dataframe is not None
                           else [result.metrics])]
    steady = history[1:] if len(history) > 1 else history
    rate = float(np.median([h["windows"] / h["train_seconds"] for h in steady]))
    startup = wall - sum(h["epoch_seconds"] for h in history)
    return rate, startup


def bare_inference(cfg, batches: list, checkpoint) -> tuple[float, float, list[pa.Table]]:
    """(seconds, CPU-seconds of all threads, forecasts) of the same predictor class called in this
    process on in-memory blocks, with as many torch threads as cores."""
    predictor = SeriesPredictor(checkpoint, **predictor_options(cfg), threads=os.cpu_count() or 1)
    started, cpu_started = time.perf_counter(), time.process_time()
    forecasts = [predictor(batch) for batch in batches]
    return time.perf_counter() - started, time.process_time() - cpu_started, forecasts


def forward_limit(cfg, batches: list, checkpoint, precision: str = "fp32", batch: int = 8192) -> float:
    """Series/s of the network's forward pass alone, the limit of any inference path on these cores: the
    predictor's model (predict.precision=`precision`: bf16 weights where the CPU has bf16 units) on the
    same blocks' forecast windows, made (and turned into tensors) before the clock starts, `batch` windows
    per call, as many torch threads as cores."""
    options = {**predictor_options(cfg), "threads": os.cpu_count() or 1, "precision": precision}
    predictor = SeriesPredictor(checkpoint, **options)
    windows = [forecast_windows(predictor.block(b), predictor.spec) for b in batches]
    inputs = [predictor.network_inputs(w, slice(i, i + batch)) for w in windows for i in range(0, len(w), batch)]
    with torch.no_grad():
        predictor.model(**inputs[0])  # warm-up (one-off allocations, oneDNN kernels)
        started = time.perf_counter()
        for kwargs in inputs:
            predictor.model(**kwargs)
    return sum(len(w) for w in windows) / (time.perf_counter() - started)


def bare_other_steps(cfg, files: list[pathlib.Path], forecasts: list[pa.Table], out: pathlib.Path) -> dict:
    """Seconds of the steps the bare predictor skips, run in this process (one core): read Parquet and
    group rows into series, validate, write the forecasts as Parquet. The same functions the Ray path
    maps over its blocks, one file at a time."""
    columns = [cfg.data.id_col, cfg.data.time_col, cfg.data.target_col]
    rename = {cfg.data.id_col: ID, cfg.data.time_col: DS, cfg.data.target_col: Y}
    seconds, started = {}, time.perf_counter()
    series = [rows_to_series(pq.read_table(f, columns=columns), rename) for f in files]
    seconds["read+group"], started = time.perf_counter() - started, time.perf_counter()
    for block in series:
        validate_batch(block, **validate_options(cfg))
    seconds["validate"], started = time.perf_counter() - started, time.perf_counter()
    out.mkdir()
    for i, table in enumerate(forecasts):
        pq.write_table(table, out / f"{i}.parquet")
    seconds["write"] = time.perf_counter() - started
    return seconds


def _import_step_modules() -> int:
    import pyarrow.parquet  # noqa: F401
    import ray.data  # noqa: F401

    import forecaster.read  # noqa: F401
    import forecaster.validate  # noqa: F401
    time.sleep(1.0)  # long enough for the tasks to run side by side, one per worker process
    return os.getpid()


def settle() -> None:
    """Wait until the previous run's predictor actors have given their CPUs back, then warm a worker
    process per CPU.

    The actors' processes displace Ray's idle worker processes; Ray starts new ones afterwards, and a
    read that runs on them pays their start and imports (about 2 s here), which a job pays once, at
    its start, where the bench counts start-up. Plain Ray tasks (not Ray Data, which runs one task at
    a time during the first second of an execution) start them all at once; quick tasks would all
    run on the one worker that is left.
    """
    import ray

    while ray.available_resources().get("CPU", 0) < ray.cluster_resources().get("CPU", 0):
        time.sleep(0.1)
    warm = ray.remote(num_cpus=1)(_import_step_modules)
    ray.get([warm.remote() for _ in range(int(ray.cluster_resources().get("CPU", 1)))])


def ray_inference(cfg, checkpoint, out: pathlib.Path) -> dict:
    """Wall seconds of each stage of the Ray Data path; read and validate materialise their output,
    so the stages run one after the other (each on all CPUs)."""
    settle()
    seconds, started = {}, time.perf_counter()
    series = read_series(cfg)
    seconds["read+group"], started = time.perf_counter() - started, time.perf_counter()
    validated = validate_series(cfg, series)
    seconds["validate"], started = time.perf_counter() - started, time.perf_counter()
    predict(cfg, validated, checkpoint).write_parquet(str(out))
    seconds["predict+write"] = time.perf_counter() - started
    return seconds


def print_inference(n_series: int, ray_stages: dict, startup: dict, bare: tuple[float, float], other: dict,
                    forward: dict, precision: str) -> None:
    """The rates against the forward-only limit, and the breakdown that bounds the ratio on this machine's
    cores."""
    cores = os.cpu_count() or 1
    (bare_seconds, bare_cpu), extra = bare, sum(other.values())
    wall, startup_s = sum(ray_stages.values()), sum(startup.values())
    ray_rate, bare_rate = n_series / max(wall - startup_s, 1e-9), n_series / bare_seconds
    bound = n_series / (bare_seconds + extra / cores)

    def seconds(stages: dict) -> str:
        return "  ".join(f"{name} {s:.1f} s" for name, s in stages.items())

    print(f"\ninference: {n_series} series, horizon 18, {cores} cores")
    print(f"  Ray Data read+validate+predict+write {ray_rate:10.0f} series/s "
          f"(wall {wall:.1f} s, start-up {startup_s:.1f} s excluded)")
    print(f"    stages: {seconds(ray_stages)}")
    print(f"    start-up (the same stages on 100 series): {seconds(startup)}")
    print(f"  bare predictor, in-memory blocks     {bare_rate:10.0f} series/s "
          f"({bare_seconds:.1f} s, {bare_cpu:.1f} CPU-s on {cores} torch threads)")
    print(f"  ratio                                {ray_rate / bare_rate:10.2f}")
    limit = forward[precision]
    others = "; ".join(f"{name} {rate:.0f} series/s ({rate / limit:.2f}x)"
                       for name, rate in forward.items() if name != precision)
    print(f"  forward pass alone, {precision} (the limit) {limit:10.0f} series/s; {others}")
    print(f"  against the limit: Ray path {ray_rate / limit:.2f}, bare predictor {bare_rate / limit:.2f}")
    print(f"  steps the bare predictor skips, one process: {seconds(other)}  (sum {extra:.1f} CPU-s)")
    print(f"  bound if prediction ran at the bare rate and those steps on all {cores} cores: "
          f"N / ({bare_seconds:.1f} s + {extra:.1f} CPU-s / {cores}) = {bound:.0f} series/s, "
          f"ratio {bound / bare_rate:.2f}")
    ceiling = n_series / (n_series / limit + extra / cores)
    print(f"  ceiling of any path that reads, validates and writes, with a predictor that costs only its forward: "
          f"N / ({n_series / limit:.1f} s + {extra:.1f} CPU-s / {cores}) = {ceiling:.0f} series/s, "
          f"{ceiling / limit:.2f} of the limit")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-series", type=int, default=2000)
    parser.add_argument("--infer-series", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--gpu", action="store_true", help="train on CUDA (cuDNN LSTM) in both loops")
    parser.add_argument("--precision", choices=("bf16", "fp32"),
                        help="train.precision and predict.precision for every path (default: the config's)")
    parser.add_argument("--workers", type=int, default=1, help="Ray Train workers (the bare loop is one process)")
    parser.add_argument("--only", choices=("train", "infer"), help="run one half only")
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="throughput-", dir=ROOT / "bench"))
    cpus = os.cpu_count() or 1
    threads = max(1, cpus // args.workers)
    common = [f"output.uri={work / 'out'}", "data.freq=MS", "model.horizon=18", "run.date=2030-01-01",
              f"train.num_workers={args.workers}", f"train.cpus_per_worker={threads}",
              f"train.max_epochs={args.epochs}", f"train.patience={args.epochs}", f"train.use_gpu={args.gpu}",
              "train.refit_epochs=0",  # --epochs epochs in both loops, as the bare loop runs them
              *([f"train.precision={args.precision}", f"predict.precision={args.precision}"] if args.precision else []),
              f"run.name=throughput-{int(time.time())}"]
    try:
        write_series(work / "train", args.train_series, files=4)
        cfg = load_config(None, [f"data.uri={work / 'train'}", *common])
        init_ray(cfg)
        clean = clean_series(validate_series(cfg, read_series(cfg)))
        if args.only != "infer":
            ray_rate, startup = ray_training(cfg, clean)
            bare_rate = bare_training(cfg, clean, threads * args.workers, args.epochs)
            print(f"\ntraining: {args.train_series} series, batch {cfg.train.batch_size}, "
                  f"{args.workers} worker(s) x {threads} thread(s)")
            print(f"  Ray Train loop  {ray_rate:10.0f} windows/s   (start-up {startup:.1f} s, not included)")
            print(f"  bare PyTorch    {bare_rate:10.0f} windows/s")
            print(f"  ratio           {ray_rate / bare_rate:10.2f}")
        if args.only == "train":
            return

        spec = ModelSpec.from_config(cfg)
        ckpt_dir = work / "checkpoint"
        ckpt_dir.mkdir()
        checkpoint_format.save(str(ckpt_dir), build_model(spec).eval(), spec)
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(ckpt_dir))
        # the start-up input has as many files as the smallest real one, so that it starts (and warms)
        # as many Ray worker processes as the measured run uses
        write_series(work / "tiny", 100, files=4, seed=99)
        write_series(work / "infer", args.infer_series, files=max(4, args.infer_series // 5000), seed=7)
        tiny = load_config(None, [f"data.uri={work / 'tiny'}", *common])
        big = load_config(None, [f"data.uri={work / 'infer'}", *common])
        # A first run on the whole input starts Ray's worker processes and their imports (Ray Data
        # runs one task at a time during the first second of each execution, so the tiny run alone
        # leaves most of them cold); then the per-execution start-up (actor start, model load) on
        # the tiny input, and the measured run.
        cold = sum(ray_inference(big, checkpoint, work / "pred-cold").values())
        startup = ray_inference(tiny, checkpoint, work / "pred-tiny")
        ray_stages = ray_inference(big, checkpoint, work / "pred-big")
        blocks = list(validate_series(big, read_series(big)).iter_batches(batch_size=big.predict.batch_size,
                                                                   batch_format="pyarrow"))
        bare_seconds, bare_cpu, forecasts = bare_inference(big, blocks, checkpoint)
        other = bare_other_steps(big, sorted((work / "infer").glob("*.parquet")), forecasts, work / "pred-bare")
        forward = {p: forward_limit(big, blocks, checkpoint, p) for p in ("fp32", "bf16")}
        print_inference(args.infer_series, ray_stages, startup, (bare_seconds, bare_cpu), other, forward,
                        big.predict.precision)
        print(f"  (the first, cold run of the Ray path took {cold:.1f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
