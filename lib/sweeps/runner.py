"""Where a sweep's runs execute: one after another, N at a time on this machine, or as Ray tasks.

Every run is its own main.py process writing its own directory, so running several at once needs
only resources: with GPUs visible each run gets one (CUDA_VISIBLE_DEVICES); on CPU the cores are
split (OMP/MKL/numba threads = cores / N, unless the caller set them). On Ray each run is a task
asking for one GPU or its share of CPUs, on a local instance or the cluster at --ray_address (the
repository and the output tree must then sit at the same path on every node, e.g. a shared
filesystem). A failed run is reported and the others go on.
"""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lib.run.errors import EXIT_SKIPPED, UserError

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@dataclass
class Job:
    name: str
    cmd: list[str]
    log: Path


@dataclass
class Outcome:
    returncode: int

    @property
    def skipped(self) -> bool:
        """main.py found the run's finished results (--skip_if_done) and did nothing."""
        return self.returncode == EXIT_SKIPPED


def visible_gpus() -> list[str]:
    """GPU ids a run can be given, without importing torch."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.stdout.splitlines()) if line.startswith("GPU")]


def thread_env(jobs: int) -> dict[str, str]:
    """Threads per run when `jobs` runs share this machine's cores (the caller's settings win)."""
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return {var: os.environ.get(var, threads) for var in THREAD_VARS}


def run_logged(cmd: list[str], log_path: Path, cwd: Path, env: dict | None = None,
               echo: bool = True) -> Outcome:
    """Run a command into its log (and to stdout when `echo`, progress bars intact)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # unbuffered: a run's last lines reach its log even when it is killed
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    with open(log_path, "ab", buffering=0) as log, subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent) as proc:
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            log.write(chunk)  # the log first: what was shown is never missing from it
            if echo:
                sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
    return Outcome(proc.returncode)


def _die_with_parent() -> None:
    """In the child, before it runs: ask Linux to end it when the sweep driver dies, however the
    driver ends (a SIGKILL included), so that no run goes on writing unsupervised."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux/glibc: children may outlive the driver
        pass


def run_sequential(jobs: list[Job], cwd: Path, report) -> None:
    for i, job in enumerate(jobs, 1):
        print(f"=== [{i}/{len(jobs)}] {job.name} -> {job.log.parent}", flush=True)
        report(job, run_logged(job.cmd, job.log, cwd))


def run_parallel(jobs: list[Job], cwd: Path, report, workers: int) -> None:
    """`workers` runs at a time; each gets a free GPU when there are any, else a share of the
    cores. Output goes to each run's log; one line per start and end here."""
    gpus = visible_gpus()
    free: queue.Queue[str | None] = queue.Queue()
    for slot in range(workers):
        free.put(gpus[slot % len(gpus)] if gpus else None)
    lock = threading.Lock()

    def one(i_job: tuple[int, Job]) -> None:
        i, job = i_job
        gpu = free.get()
        env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None
                                  else thread_env(workers)))
        with lock:
            where = f"GPU {gpu}" if gpu is not None else f"{env['OMP_NUM_THREADS']} threads"
            print(f"=== [{i}/{len(jobs)}] {job.name} -> {job.log.parent} ({where})", flush=True)
        try:
            outcome = run_logged(job.cmd, job.log, cwd, env, echo=False)
        except OSError:
            outcome = Outcome(-1)
        finally:
            free.put(gpu)
        with lock:
            report(job, outcome)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, enumerate(jobs, 1)))


def run_ray(jobs: list[Job], cwd: Path, report, workers: int, address: str | None) -> None:
    """Every run a Ray task: one GPU each when this machine has GPUs, else cores / workers."""
    try:
        import ray
    except ImportError as err:
        raise UserError("--backend ray needs Ray: pip install ray") from err
    gpus = visible_gpus()
    # workers import lib.sweeps.runner (run_logged) from the repository
    runtime_env = {"env_vars": {"PYTHONPATH": str(cwd)}}
    # a local instance keeps its session files in a folder of ours, removed afterwards
    scratch = None if address else tempfile.mkdtemp(prefix="ray-")
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True, runtime_env=runtime_env,
             **({} if address else {"num_cpus": os.cpu_count(), "_temp_dir": scratch}))
    try:
        threads = thread_env(workers)
        cpus = max(1, int(threads["OMP_NUM_THREADS"]))

        @ray.remote
        def task(cmd: list[str], log: str, env_extra: dict) -> int:
            env = dict(os.environ, **env_extra)
            gpu_ids = ray.get_gpu_ids()
            if gpu_ids:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(str(int(g)) for g in gpu_ids)
            return run_logged(cmd, Path(log), cwd, env, echo=False).returncode

        options = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": cpus}
        pending = {}
        for i, job in enumerate(jobs, 1):
            where = "1 GPU" if gpus else f"{cpus} CPUs, {threads['OMP_NUM_THREADS']} threads"
            print(f"=== [{i}/{len(jobs)}] {job.name} -> {job.log.parent} (Ray task, {where})",
                  flush=True)
            ref = task.options(**options).remote(job.cmd, str(job.log),
                                                 {} if gpus else threads)
            pending[ref] = job
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                report(job, Outcome(ray.get(done[0])))
            except Exception:  # noqa: BLE001 - a lost worker fails this run, not the sweep
                report(job, Outcome(-1))
    finally:
        ray.shutdown()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
