"""Scale: the whole job, as users run it, on N synthetic series; wall time and memory of everything it starts.

    .venv/bin/python bench/scale.py [--series 10000 100000] [--million] [--keep] [--set key=value ...]

For each N: N monthly seasonal series of 120 points (forecaster.synthetic.seasonal_series) are written as
Parquet files of 5000 series each into a fresh directory under bench/work/; then `.venv/bin/forecaster run`
runs as a subprocess (a local Ray of its own: train.max_epochs=2, train.patience=2, other keys at their
defaults) and its output goes next to the input. While it runs, the process tree rooted at the job process
(the driver, Ray's gcs_server, raylet, dashboard, and every worker: all are its descendants) is sampled every
0.5 s from /proc: the peak of the summed RSS, and the peak of the summed PSS (proportional set size: pages
shared by several processes, e.g. Ray's object store in /dev/shm and the torch libraries, are counted once
in total instead of once per process, so PSS is the closer answer to "how much memory does the job need").

The job starts Ray: on a shared machine run the benchmark under the Ray lock, e.g.
`flock /tmp/ray.lock .venv/bin/python bench/scale.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow.parquet as pq  # noqa: E402

from forecaster.synthetic import seasonal_series  # noqa: E402

SERIES_PER_FILE = 5000
LENGTH = 120
HORIZON = 18
RUN_DATE = "2025-06-01"  # after the last point (series start 2015-01, 120 months)
PAGE = os.sysconf("SC_PAGE_SIZE")


def write_input(directory: pathlib.Path, n_series: int) -> int:
    """N series in files of SERIES_PER_FILE series (ids unique across files); returns the file count."""
    directory.mkdir(parents=True)
    files = 0
    for start in range(0, n_series, SERIES_PER_FILE):
        count = min(SERIES_PER_FILE, n_series - start)
        table = seasonal_series(count, LENGTH, freq="MS", seed=files, id_prefix=f"f{files:04d}-")
        pq.write_table(table, directory / f"part-{files:04d}.parquet")
        files += 1
    return files


# ---- process tree memory from /proc ----

def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])  # after "pid (comm) state"
        children.setdefault(ppid, []).append(int(entry))
    return children


def tree(root: int) -> list[int]:
    children, pids, todo = _children_map(), [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(children.get(pid, []))
    return pids


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def _pss(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        for line in fh:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


def _label(pid: int) -> str:
    """What a process is: Ray's process title (ray::SeriesPredictor, ray::IDLE, ...) or its program."""
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        argv = fh.read().split(b"\0")
    first = argv[0].decode(errors="replace")
    if first.startswith("ray::"):
        return first.split()[0].split(".")[0]
    words = [a.decode(errors="replace") for a in argv if a]
    name = os.path.basename(first)
    if name.startswith("python") and len(words) > 1:  # python path/to/script.py -> script.py
        name = os.path.basename(words[2] if words[1] == "-m" and len(words) > 2 else words[1])
    return name


def _rss_parts(pid: int) -> tuple[int, int, int]:
    """RSS split into anonymous, file-backed (libraries) and shared-memory (Ray's object store) bytes."""
    parts = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                key, value = line.split(":")
                parts[key] = int(value.split()[0]) * 1024
    return parts.get("RssAnon", 0), parts.get("RssFile", 0), parts.get("RssShmem", 0)


class TreeSampler(threading.Thread):
    """Peak summed RSS / PSS and peak process count of the tree under `root`, every `interval` s;
    at the RSS peak, what each process was and its RSS parts (`breakdown`)."""

    def __init__(self, root: int, interval: float = 0.5):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self.breakdown: list[tuple[str, int, int, int]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            rss = pss = procs = 0
            processes = []
            for pid in tree(self.root):
                try:
                    size = _rss(pid)
                    pss += _pss(pid)
                    processes.append((_label(pid), *_rss_parts(pid)))
                    rss += size
                    procs += 1
                except (OSError, ValueError):  # exited between listing and reading
                    pass
            if rss > self.peak_rss:
                self.peak_rss, self.breakdown = rss, processes
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, procs)
            self._done.wait(self.interval)

    def summary(self) -> str:
        """The RSS peak's processes grouped by label, largest first (GiB: anonymous / file / shared)."""
        groups: dict[str, list[int]] = {}
        for label, anon, file, shmem in self.breakdown:
            group = groups.setdefault(label, [0, 0, 0, 0])
            group[0] += 1
            group[1] += anon
            group[2] += file
            group[3] += shmem
        lines = ["| process | count | anon GiB | file GiB | shmem GiB |", "| --- | ---: | ---: | ---: | ---: |"]
        for label, (count, anon, file, shmem) in sorted(groups.items(), key=lambda g: -sum(g[1][1:])):
            lines.append(f"| {label} | {count} | {anon / 2**30:.2f} | {file / 2**30:.2f} | {shmem / 2**30:.2f} |")
        return "\n".join(lines)

    def stop(self) -> None:
        self._done.set()
        self.join()


def run_job(data: pathlib.Path, out: pathlib.Path, log: pathlib.Path,
            overrides: list[str]) -> tuple[float, TreeSampler, int]:
    command = [
        str(ROOT / ".venv" / "bin" / "forecaster"), "run",
        "--set", f"data.uri={data}", "--set", "data.freq=MS", "--set", f"model.horizon={HORIZON}",
        "--set", f"output.uri={out}", "--set", f"run.date={RUN_DATE}",
        "--set", "train.max_epochs=2", "--set", "train.patience=2",
    ] + [arg for item in overrides for arg in ("--set", item)]
    return measured(command, log)


def measured(command: list[str], log: pathlib.Path) -> tuple[float, TreeSampler, int]:
    """Run `command` (a job that starts its own local Ray) with its output in `log`: (wall seconds, the
    sampler of its process tree, exit code)."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)  # a local Ray of the job's own, inside the measured tree
    with open(log, "w") as fh:
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        code = proc.wait()
        wall = time.perf_counter() - started
    sampler.stop()
    return wall, sampler, code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, nargs="+", default=[10_000, 100_000], metavar="N")
    parser.add_argument("--million", action="store_true", help="also run 1000000 series")
    parser.add_argument("--keep", action="store_true", help="keep input and output under bench/work/")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config overrides for the job (e.g. train.windows_per_series=1 at 1M series)")
    args = parser.parse_args(argv)
    sizes = list(args.series) + ([1_000_000] if args.million else [])

    work = ROOT / "bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    rows, windows = [], None
    for n in sizes:
        run_dir = pathlib.Path(tempfile.mkdtemp(prefix=f"scale-{n}-", dir=work))
        try:
            started = time.perf_counter()
            files = write_input(run_dir / "input", n)
            print(f"{n} series: {files} files written in {time.perf_counter() - started:.1f} s; running the job",
                  flush=True)
            log = run_dir / "job.log"
            wall, sampler, code = run_job(run_dir / "input", run_dir / "out", log, args.overrides)
            if code != 0:
                print(log.read_text()[-5000:], file=sys.stderr)
                print(f"{n} series: the job exited with {code} (log: {log})", file=sys.stderr)
                args.keep = True
                return code
            manifest = json.loads((run_dir / "out" / "manifests" / f"forecast_date={RUN_DATE}.json").read_text())
            assert manifest["counts"]["forecast"] == n, manifest["counts"]
            timings = manifest["timings_s"]
            rows.append((n, wall, n / wall, sampler.peak_rss, sampler.peak_pss, sampler.peak_procs,
                         timings.get("read_validate", 0.0), timings.get("train", 0.0),
                         timings.get("predict_write", 0.0), manifest["metrics"].get("epochs")))
            windows = manifest["config"]["train"].get("windows_per_series")
            print(f"{n} series: {wall:.1f} s, {n / wall:.0f} series/s, peak RSS {sampler.peak_rss / 2**30:.2f} GiB",
                  flush=True)
            print(f"processes at the RSS peak ({n} series):\n{sampler.summary()}", flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(run_dir, ignore_errors=True)

    print()
    mem = os.sysconf("SC_PHYS_PAGES") * PAGE / 2**30
    print(f"machine: {os.cpu_count()} CPUs, {mem:.0f} GiB memory; {LENGTH} points per series, horizon {HORIZON}, "
          f"train.windows_per_series={windows}")
    print("| series | wall s | series/s | peak RSS (tree) | peak PSS (tree) | processes | read+validate s "
          "| train s | predict+write s | epochs |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n, wall, rate, rss, pss, procs, read, train, write, epochs in rows:
        print(f"| {n:,} | {wall:.1f} | {rate:.0f} | {rss / 2**30:.2f} GiB | {pss / 2**30:.2f} GiB | {procs} "
              f"| {read:.1f} | {train:.1f} | {write:.1f} | {epochs} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
