"""The machine a run's numbers depend on, its peak memory, and glibc's allocator settings.

Float32 kernels differ between CPU instruction sets (torch and MKL pick AVX2, AVX-512 or AMX
paths at run time) and thread counts can change reduction orders, so a results file records
the CPU, the kernel path torch chose, the threads, the GPU, and the environment variables that
steer them. Peak memory also depends on what glibc's allocator keeps: this module is the one
place that talks to libc.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
from pathlib import Path

import torch

# CPU features that select different float kernels
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
NUMERIC_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
               "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
               "DNNL_MAX_CPU_ISA", "MKL_CBWR")


def _cpuinfo() -> tuple[str, list[str]]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, [f for f in CPU_FLAGS if f in flags]


def machine_record(device: torch.device) -> dict:
    """CPU model and instruction set, torch's kernel path, threads, GPUs, steering env vars."""
    model, flags = _cpuinfo()
    record = {"cpu": model, "cpu_flags": flags, "cpu_cores": os.cpu_count(),
              "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "torch_threads": torch.get_num_threads(),
              "env": {k: os.environ[k] for k in NUMERIC_ENV if k in os.environ}}
    if device.type == "cuda":
        record["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        record["cuda"] = torch.version.cuda
    return record


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA's allocator counter, or Linux's peak RSS (clear_refs 5) once the
    heap pages freed earlier are handed back, so the new peak starts from what is alive."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    _release_free_heap()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _release_free_heap() -> None:
    # glibc keeps freed small and mid-sized blocks resident; without the trim, a step that
    # follows a larger one (a benchmark's later runs, a prune after loading) reads the earlier
    # step's high-water mark as its own peak
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (macOS, musl): its allocator is left as it is
        return None


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MAP_FROM_BYTES = 1 << 20


def map_large_allocations() -> None:
    """From now on every allocation of 1 MiB or more gets its own mapping, returned to the OS
    when freed. glibc otherwise raises its mmap threshold up to 32 MiB as blocks are freed, and
    keeps freed heap memory: a small model's peak RSS then grew with depth under --offload (2 vs
    8 blocks of 64 MiB: +160-300 MiB; with this: +3 MiB). Blocks of large models, made of
    tensors above 32 MiB, were mapped anyway."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(M_MMAP_THRESHOLD, MAP_FROM_BYTES)


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA max allocated on GPU; process peak RSS (VmHWM) on CPU."""
    if device.type == "cuda":
        devices = range(torch.cuda.device_count())
        return int(sum(torch.cuda.max_memory_allocated(i) for i in devices))
    peak = _proc_status_bytes("VmHWM")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return peak


def _proc_status_bytes(field: str) -> int | None:
    """A memory field of /proc/self/status (Linux), in bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_memory_bytes(device: torch.device) -> int:
    """CUDA memory allocated now, or the process's resident set now."""
    if device.type == "cuda":
        return int(sum(torch.cuda.memory_allocated(i) for i in range(torch.cuda.device_count())))
    return _proc_status_bytes("VmRSS") or 0
