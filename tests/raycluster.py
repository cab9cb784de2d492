"""A real Ray head on this machine for the tests: `ray start --head --block` in a session of its own.

The node is this virtualenv's `ray start --block` in a session of its own (start_new_session), with its
own private --temp-dir and every port explicit and free, listening on 127.0.0.1: nothing here touches a Ray
that someone else runs. A node is stopped by SIGTERM to its `ray start --block` process (which shuts down
the processes it started), then SIGKILL to its process group and to whatever still names its temp dir on
its command line. Never `ray stop`: it stops every Ray process on the machine by name.

The head's temp dir is `<root>/ray`, so a process with RAY_TMPDIR=<root> finds the cluster's address file
(`<root>/ray/ray_current_cluster`) as a plain `ray.init()` on a cluster machine finds /tmp/ray's.

Authentication (checked against the installed Ray 2.60 source, ray/_private/authentication/): `ray start
--head` with RAY_AUTH_MODE unset turns token authentication on by itself when a token file exists
(~/.ray/auth_token, which any earlier `ray.init()` that started a local Ray writes), while the `ray job
submit` client only sends the token when its own RAY_AUTH_MODE is `token`: the mode must be the same on the
nodes and the clients. Here every node and client gets RAY_AUTH_MODE=disabled (all listen on 127.0.0.1).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RAY = VENV_BIN / "ray"
HEAD_PORT_FLAGS = ("port", "dashboard-port", "object-manager-port", "node-manager-port", "ray-client-server-port",
                   "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                   "metrics-export-port")
# The nodes' own credentials, standing in for a node identity (instance role): no endpoint.
NODE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
WORKER_PORT_FLAGS = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                     "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port")
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):  # all open at once: n different ports
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def ray_env() -> dict[str, str]:
    """Environment for nodes and clients: the venv first on PATH, auth disabled on both sides."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_ADDRESS", "RAY_JOB", "AWS_", "RAY_AUTH_TOKEN", "RAY_TMPDIR"))}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
        "RAY_DEDUP_LOGS": "0",
        "PYTHONUNBUFFERED": "1",
        # `ray start --block` on SIGTERM first drains the node for up to 30 s (Ray 2.60 default): not here
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    })
    env.pop("VIRTUAL_ENV", None)
    return env


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read().decode())


def cmdline(pid: int) -> bytes:
    """A process's command line (read from /proc: psutil is only vendored inside Ray); b"" once it is gone.
    A Ray worker's is its title, e.g. `ray::RayTrainWorker...`."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def pids_naming(text: str) -> list[int]:
    """Processes whose command line contains `text`."""
    return [int(e.name) for e in Path("/proc").iterdir()
            if e.name.isdigit() and int(e.name) != os.getpid() and text.encode() in cmdline(int(e.name))]


def parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2:].split()[1])


@dataclass
class Node:
    """One `ray start --block` process and the temp dir that names its processes."""

    proc: subprocess.Popen
    temp_dir: str
    log: Path

    def started(self, pid: int) -> bool:
        """Whether `pid` descends from this node's processes (its raylet names the node's temp dir)."""
        while pid > 1:
            if self.temp_dir.encode() in cmdline(pid):
                return True
            pid = parent(pid)
        return False

    def stop(self) -> None:
        """Stop this node only: SIGTERM, then its process group and stragglers by pid."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the session this node was started in
        except (ProcessLookupError, PermissionError):
            pass
        for pid in pids_naming(self.temp_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait()


@dataclass
class Cluster:
    """A head (`gcs`, `dashboard`); `root` is what RAY_TMPDIR must name to find its address file."""

    root: str
    head: Node
    gcs: str
    dashboard: str
    workers: list[Node] = field(default_factory=list)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(RAY), *args], env=ray_env(), cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)

    def job_status(self, job_id: str) -> str:
        return get_json(f"{self.dashboard}/api/jobs/{job_id}")["status"]

    def job_logs(self, job_id: str) -> str:
        done = self.cli("job", "logs", "--address", self.dashboard, job_id)
        return done.stdout + done.stderr

    def wait_for_job(self, job_id: str, timeout: float) -> str:
        """The job's terminal status; stops the job and fails if it runs longer than `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.job_status(job_id)
            if status in TERMINAL:
                return status
            time.sleep(2)
        self.cli("job", "stop", "--address", self.dashboard, job_id)
        raise TimeoutError(f"job {job_id} still running after {timeout:.0f} s:\n{self.job_logs(job_id)[-6000:]}")

    def add_worker(self, num_cpus: int, env: dict | None = None, timeout: float = 90) -> Node:
        """One more node (`ray start --address=<gcs> --block`) with its own temp dir and ports; returns
        once the head lists it alive. A `ray start` that gives up before joining is started again while
        `timeout` lasts: right after a node loss the head's GCS, busy with the job that lost it, has
        answered a joining node's first call after its 30 s deadline ("Failed to get node info ...
        Deadline Exceeded"), and that `ray start` exits."""
        before = len(self.alive_nodes())
        deadline = time.monotonic() + timeout
        gave_up = []
        while True:
            temp_dir = tempfile.mkdtemp(prefix="w", dir=self.root)
            ports = dict(zip(WORKER_PORT_FLAGS, free_ports(len(WORKER_PORT_FLAGS)), strict=True))
            command = [str(RAY), "start", f"--address={self.gcs}", "--block", f"--num-cpus={num_cpus}",
                       "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}", "--disable-usage-stats",
                       *[f"--{flag}={port}" for flag, port in ports.items()]]
            node = _spawn(command, temp_dir, {**ray_env(), **NODE_CREDENTIALS, **(env or {})})
            self.workers.append(node)
            while len(self.alive_nodes()) <= before and node.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            if len(self.alive_nodes()) > before:
                return node
            self.workers.remove(node)
            node.stop()
            gave_up.append(node.log.read_text()[-3000:])
            if time.monotonic() >= deadline:
                raise RuntimeError("worker node did not join:\n" + "\n---\n".join(gave_up))

    def alive_nodes(self) -> list[dict]:
        """The nodes the head lists alive (its REST API: no driver of ours joins the cluster)."""
        nodes = get_json(f"{self.dashboard}/nodes?view=summary&nocache=1")["data"]["summary"]
        return [n for n in nodes if n["raylet"]["state"] == "ALIVE"]

    def wait_for_nodes(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.alive_nodes()) != count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(self.alive_nodes())} nodes alive after {timeout:.0f} s, not {count}")
            time.sleep(0.5)

    def stop(self) -> None:
        for node in [*self.workers, self.head]:
            node.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _spawn(command: list[str], temp_dir: str, env: dict) -> Node:
    log = Path(temp_dir).with_suffix(".log")
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Node(proc, temp_dir, log)


def start_head(num_cpus: int, env: dict | None = None) -> Cluster:
    """A head with the dashboard (the job API) on 127.0.0.1; its temp dir is `<root>/ray`."""
    root = tempfile.mkdtemp(prefix="rc-", dir="/tmp")  # short: Ray's unix sockets live under it (108 bytes)
    temp_dir = os.path.join(root, "ray")
    ports = dict(zip(HEAD_PORT_FLAGS, free_ports(len(HEAD_PORT_FLAGS)), strict=True))
    command = [str(RAY), "start", "--head", "--block", f"--num-cpus={num_cpus}", "--include-dashboard=true",
               "--dashboard-host=127.0.0.1", "--node-ip-address=127.0.0.1", f"--temp-dir={temp_dir}",
               "--disable-usage-stats", *[f"--{flag}={port}" for flag, port in ports.items()]]
    os.makedirs(temp_dir)
    try:
        head = _spawn(command, temp_dir, {**ray_env(), **NODE_CREDENTIALS, **(env or {})})
    except OSError:
        shutil.rmtree(root, ignore_errors=True)
        raise
    cluster = Cluster(root, head, f"127.0.0.1:{ports['port']}", f"http://127.0.0.1:{ports['dashboard-port']}")
    try:
        _wait_for_job_api(cluster)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextlib.contextmanager
def running_cluster(head_cpus: int, worker_cpus: list[int], env: dict | None = None):
    """A head of `head_cpus` CPUs and one worker node per entry of `worker_cpus`, all alive when the
    block starts and stopped when it ends (the multi-node tests' cluster: head_cpus=0, [2, 2])."""
    cluster = start_head(num_cpus=head_cpus, env=env)
    try:
        for cpus in worker_cpus:
            cluster.add_worker(num_cpus=cpus, env=env)
        cluster.wait_for_nodes(1 + len(worker_cpus))
        yield cluster
    finally:
        cluster.stop()


def _wait_for_job_api(cluster: Cluster, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster.head.proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {cluster.head.proc.returncode}:\n"
                               f"{cluster.head.log.read_text()[-5000:]}")
        try:
            get_json(f"{cluster.dashboard}/api/version")
            get_json(f"{cluster.dashboard}/api/jobs/")  # the job API is up, not only the HTTP server
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            time.sleep(1)
    raise RuntimeError(f"dashboard {cluster.dashboard} not up after {timeout:.0f} s:\n"
                       f"{cluster.head.log.read_text()[-5000:]}")
