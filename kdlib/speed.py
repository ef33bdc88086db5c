"""The switchable speed techniques of the training loop, resolved for one device.

Each can be turned off on its own so ``kdlib bench`` can measure what it contributes:
data resident on the device (the fast loop) vs a DataLoader (the classic loop), bf16
autocast, channels_last memory layout, torch.compile, and a fused (or foreach) optimizer.

``auto`` means the fastest setting that keeps accuracy: on a GPU everything on; on a CPU
bf16 autocast and channels_last where the CPU computes bf16 natively (AMX or
AVX512-BF16, as PyTorch reports it; without, bf16 is emulated and slower than float32),
else float32 with channels_last. The decision and the facts behind it are recorded with
the run (``cpu_speed_facts``), never a timing taken at start-up.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from kdlib.config import TrainConfig


@dataclass(frozen=True)
class Speed:
    """Resolved speed settings of one run (recorded in its config as ``speed``)."""

    loop: str
    precision: str  # fp32 | bf16
    channels_last: bool
    compile: bool
    fused_optimizer: bool

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# The CPU features that make bf16 native (PyTorch and /proc/cpuinfo use the same names).
NATIVE_BF16_FEATURES = ("amx_bf16", "avx512_bf16")


def cpu_speed_facts(capability: dict[str, Any] | None = None) -> dict[str, Any]:
    """What decides ``auto`` on a CPU: its model name and bf16 features, from PyTorch.

    ``capability`` is ``torch._C._cpu._get_cpu_capability()`` (tests pass a fake one);
    where this PyTorch build cannot report it, ``/proc/cpuinfo``'s flags are read instead.
    """
    source = "torch"
    if capability is None:
        try:
            capability = dict(torch._C._cpu._get_cpu_capability())
        except (AttributeError, RuntimeError):
            capability = {}
        if not all(name in capability for name in NATIVE_BF16_FEATURES):
            # this PyTorch build does not report them: the kernel's flags do
            capability, source = {**capability, **_proc_cpuinfo_capability()}, "/proc/cpuinfo"
    features = {name: bool(capability.get(name, False)) for name in NATIVE_BF16_FEATURES}
    return {
        "cpu_name": str(capability.get("cpu_name") or _proc_cpu_name() or "unknown"),
        **features,
        "native_bf16": any(features.values()),
        "source": source,
    }


def _proc_cpuinfo_capability() -> dict[str, Any]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return {name: name in flags for name in NATIVE_BF16_FEATURES}


def _proc_cpu_name() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def auto_cpu_setting(facts: dict[str, Any]) -> tuple[str, bool]:
    """(precision, channels_last) that ``auto`` picks for the fast loop on this CPU."""
    return ("bf16", True) if facts["native_bf16"] else ("fp32", True)


def resolve_speed(
    cfg: TrainConfig, device: torch.device, cpu_facts: dict[str, Any] | None = None
) -> Speed:
    """Fill in the ``auto`` settings for ``device`` (see the module docstring).

    The classic loop stays the paper's float32, contiguous baseline unless asked
    otherwise. ``cpu_facts`` (from ``cpu_speed_facts``) lets tests fake the CPU.
    """
    gpu = device.type == "cuda"
    fast = cfg.loop == "fast"
    if gpu:
        auto_precision, auto_cl = ("bf16", True) if fast else ("fp32", False)
    elif fast:
        auto_precision, auto_cl = auto_cpu_setting(cpu_facts or cpu_speed_facts())
    else:
        auto_precision, auto_cl = "fp32", False
    precision = cfg.precision if cfg.precision != "auto" else auto_precision
    channels_last = cfg.channels_last if cfg.channels_last is not None else auto_cl
    return Speed(
        loop=cfg.loop,
        precision=precision,
        channels_last=bool(channels_last),
        compile=cfg.compile,
        fused_optimizer=gpu and fast,
    )


def make_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: TrainConfig, speed: Speed
) -> torch.optim.SGD:
    """The paper's SGD; one fused kernel per step on a GPU, else the foreach version."""
    kwargs: dict[str, Any] = {"fused": True} if speed.fused_optimizer else {"foreach": True}
    return torch.optim.SGD(
        list(params),
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov,
        **kwargs,
    )


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` (BatchNorm parameters and losses stay float32), or nothing."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def usable_cores() -> int:
    """The cores this process may run on: the CPUs of its affinity mask (containers,
    taskset), at most the physical cores PyTorch reports (hyperthreads do not add
    arithmetic units to share)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        physical = int(torch._C._cpu._get_cpu_capability().get("num_physical_cores") or cpus)
    except (AttributeError, RuntimeError, TypeError, ValueError):
        physical = cpus
    return max(1, min(cpus, physical))


def worker_threads(processes: int, cores: int | None = None) -> int:
    """Torch threads for each of ``processes`` runs packed on one CPU: its share of the
    cores (``usable_cores``; at least one), so packed runs do not fight over the cores."""
    cores = cores or usable_cores()
    return max(1, cores // max(1, processes))


def speed_reason(cfg: TrainConfig, device: torch.device, speed: Speed) -> str:
    """One line saying why the run got its precision and layout (recorded with the run)."""
    asked = [k for k in ("precision", "channels_last") if getattr(cfg, k) not in ("auto", None)]
    chosen = f"{speed.precision}, {'channels_last' if speed.channels_last else 'contiguous'}"
    if len(asked) == 2:
        return f"{chosen}: as asked"
    if device.type == "cuda":
        return f"{chosen}: auto on a GPU"
    if speed.loop == "classic":
        return f"{chosen}: auto for the classic loop (the float32 baseline)"
    facts = cpu_speed_facts()
    have = [name for name in NATIVE_BF16_FEATURES if facts[name]]
    why = f"native bf16 ({', '.join(have)})" if have else "no native bf16 (no AMX, no AVX512-BF16)"
    return f"{chosen}: auto on a CPU ({facts['cpu_name']}) with {why}" + (
        f"; {', '.join(asked)} as asked" if asked else ""
    )
