"""What a run ran on: recorded next to every result so numbers can be traced and compared."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import kdlib
from kdlib.allocator import allocator_state
from kdlib.errors import KdlibError
from kdlib.speed import cpu_speed_facts


def resolve_device(name: str = "auto", present: bool = True) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; asking for missing CUDA is an error
    unless ``present`` is False (naming the device a run was made on, to look it up)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise KdlibError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N")
    if present and name.startswith("cuda") and not torch.cuda.is_available():
        raise KdlibError(
            f"device {name!r} asked for, but no CUDA GPU is available; use --device cpu"
        )
    return torch.device(name)


def device_name(device: torch.device) -> str:
    """A human-readable name of the device (GPU model, or CPU model)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu ({cpu}, {torch.get_num_threads()} threads)"


def git_commit() -> dict[str, Any]:
    """The git commit of the kdlib checkout in use, and whether it had local changes."""
    root = Path(kdlib.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return {"git_commit": commit, "git_dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def machine_kind(device: torch.device) -> dict[str, Any]:
    """The machine a run trains on, as its cost is reported (the compute table): recorded
    again at every resume, since a run may continue on another kind of machine."""
    info: dict[str, Any] = {
        "device": str(device),
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cpu":
        facts = cpu_speed_facts()
        info.update(
            cpu_name=facts["cpu_name"],
            native_bf16=facts["native_bf16"],
            cpu_allocator=allocator_state(),
        )
    return info


def environment_info(device: torch.device) -> dict[str, Any]:
    """Everything about the software and hardware that could change a result."""
    info: dict[str, Any] = {
        "kdlib_version": kdlib.__version__,
        **git_commit(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": device_name(device),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cpu":  # what decided the CPU's automatic precision and layout
        info["cpu"] = cpu_speed_facts()
        info["cpu_allocator"] = allocator_state()  # kdlib.allocator: speed, not results
    return info
