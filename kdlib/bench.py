"""``kdlib bench``: seconds per epoch of the fast and the classic loop, in one process.

Both loops train the same method on the same synthetic uint8 data (timing does not depend
on the pixels or the teacher's weights, so no dataset or checkpoint is needed). Each
variant runs one untimed warm-up pass (worker start-up, torch.compile, cuDNN autotuning),
then a timed pass of ``steps`` steps; seconds per epoch are scaled to 50,000 images.
Variants turn the speed techniques off one at a time to measure what each contributes.

On a CPU every precision x memory layout is timed side by side (and the compiled one with
``--compile``), marking the one ``auto`` picks; ``packed`` also times N runs packed on the
CPU at once (N worker processes, each with its share of the cores) against one, and the
``auto`` setting is timed once more with glibc's default malloc (``kdlib.allocator``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from kdlib.allocator import allocator_state, tune_allocator
from kdlib.config import TrainConfig
from kdlib.data import dataset_stats
from kdlib.data.cache import CifarData
from kdlib.environment import device_name, resolve_device
from kdlib.errors import KdlibError
from kdlib.evaluate import default_eval_batch_size, evaluate
from kdlib.flops import training_flops_per_image
from kdlib.loop import train_one_epoch
from kdlib.models import create_model
from kdlib.plan import check
from kdlib.speed import Speed, cpu_speed_facts, resolve_speed, worker_threads
from kdlib.train import build_method, make_loaders

EPOCH_IMAGES = 50_000
TEST_IMAGES = 10_000
DEFAULT_MALLOC = ", default malloc"  # the row of ``auto`` without kdlib.allocator


def synthetic_data(n_train: int, n_test: int, seed: int = 0) -> CifarData:
    """Random CIFAR-shaped uint8 data with CIFAR-10's normalization."""
    rng = np.random.default_rng(seed)
    mean, std = dataset_stats("cifar10")
    return CifarData(
        name="synthetic",
        classes=[str(i) for i in range(10)],
        num_classes=10,
        train_images=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        train_labels=rng.integers(0, 10, n_train).astype(np.int64),
        test_images=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        test_labels=rng.integers(0, 10, n_test).astype(np.int64),
        fingerprint="synthetic",
        mean=np.asarray(mean, np.float32),
        std=np.asarray(std, np.float32),
    )


def cpu_setting_name(precision: str, channels_last: bool) -> str:
    """The row name of one CPU setting in ``kdlib bench --device cpu``."""
    return f"{precision}, {'channels_last' if channels_last else 'contiguous'}"


def cpu_variants(compile: bool) -> dict[str, dict[str, Any]]:
    """On a CPU: each precision x layout of the fast loop, compiled bf16, and classic."""
    out: dict[str, dict[str, Any]] = {}
    for precision in ("fp32", "bf16"):
        for cl in (False, True):
            out[cpu_setting_name(precision, cl)] = {
                "loop": "fast",
                "precision": precision,
                "channels_last": cl,
                "compile": False,
            }
    if compile:
        for precision in ("fp32", "bf16"):
            out[cpu_setting_name(precision, True) + ", compile"] = {
                "loop": "fast",
                "precision": precision,
                "channels_last": True,
                "compile": True,
            }
    out["classic"] = {"loop": "classic", "precision": "fp32", "channels_last": False}
    return out


def variants(device: torch.device, ablate: bool, compile: bool) -> dict[str, dict[str, Any]]:
    """The configurations to time: fast (all techniques), classic, and ablations; on a CPU
    the settings of ``cpu_variants``."""
    if device.type == "cpu":
        return cpu_variants(compile)
    fast: dict[str, Any] = {"loop": "fast", "compile": compile}
    out = {"fast": fast}
    if ablate:
        out["fast, fp32"] = {**fast, "precision": "fp32"}
        out["fast, no channels_last"] = {**fast, "channels_last": False}
        if compile:
            out["fast, no compile"] = {**fast, "compile": False}
    out["classic"] = {
        "loop": "classic",
        "precision": "fp32",
        "channels_last": False,
        "compile": False,
    }
    return out


def _time_variant(
    base: TrainConfig, settings: dict[str, Any], data: CifarData, device: torch.device
) -> dict[str, Any]:
    cfg = replace(base, **settings)
    speed: Speed = resolve_speed(cfg, device)
    train_loader, _, test_loader = make_loaders(cfg, data, device, speed)
    teacher = None
    if cfg.teacher:
        teacher = create_model(cfg.teacher, data.num_classes).to(device)
    distiller, optimizer, _ = build_method(cfg, data, device, speed, teacher, train_loader)
    forward: nn.Module = torch.compile(distiller) if speed.compile else distiller

    def one_pass() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        train_one_epoch(
            distiller,
            train_loader,
            optimizer,
            None,
            forward=forward,
            autocast_dtype=speed.autocast_dtype,
        )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    one_pass()  # warm-up
    seconds = one_pass()
    steps = len(train_loader)
    per_step = seconds / steps
    sec_per_epoch = per_step * math.ceil(EPOCH_IMAGES / cfg.batch_size)
    evaluate(distiller.student, test_loader, speed.autocast_dtype)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    evaluate(distiller.student, test_loader, speed.autocast_dtype)
    eval_seconds = (time.perf_counter() - t0) * TEST_IMAGES / test_loader.num_examples
    return {
        "speed": speed.to_dict(),
        "steps": steps,
        "seconds_per_step": per_step,
        "seconds_per_epoch": sec_per_epoch,
        "images_per_second": cfg.batch_size / per_step,
        "eval_seconds_10k": eval_seconds,
    }


def run_bench(
    method: str = "kd",
    student: str = "resnet8",
    teacher: str | None = "resnet26",
    device: str = "auto",
    steps: int | None = None,
    batch_size: int = 128,
    ablate: bool = False,
    compile: bool | None = None,
    num_workers: int = 4,
    only: str | None = None,
    packed: list[int] | None = None,
    eval_images: int | None = None,
    cpu_allocator: str = "tuned",
) -> dict[str, Any]:
    """Time every variant (or ``only`` that one); returns a JSON-ready dict, one row per
    variant. ``packed``: also the aggregate speed of N packed runs, for each N given.
    ``eval_images``: how many images the evaluation is timed on (GPU 10,000, CPU 1,000);
    it is reported per 10,000 either way. ``cpu_allocator``: malloc as training runs get
    it (``kdlib.allocator``); the whole CPU table also times the ``auto`` setting with
    glibc's default malloc, in a process of its own (malloc settings are process-wide)."""
    dev = resolve_device(device)
    gpu = dev.type == "cuda"
    if not gpu:
        tune_allocator(cpu_allocator)
    steps = steps or (100 if gpu else 5)
    compile = gpu if compile is None else compile
    n_test = eval_images or (TEST_IMAGES if gpu else 1000)
    data = synthetic_data(steps * batch_size, n_test)
    base = TrainConfig(
        method=method,
        student=student,
        teacher=teacher,
        teacher_checkpoint=None,
        epochs=1,
        batch_size=batch_size,
        val_size=0,
        device=str(dev),
        eval_batch_size=default_eval_batch_size(dev),
        num_workers=num_workers,
    )
    check(base)  # the whole request: the methods' and models' rules too
    auto = resolve_speed(base, dev)
    table = variants(dev, ablate, compile)
    auto_name = "fast" if gpu else cpu_setting_name(auto.precision, auto.channels_last)
    if only is not None:
        if only == "auto":
            only = auto_name
        if only not in table:
            valid = ", ".join(["auto", *table])
            raise KdlibError(f"--only={only!r}: not a variant here; valid: {valid}")
        table = {only: table[only]}
    rows = {name: _time_variant(base, settings, data, dev) for name, settings in table.items()}
    notes: dict[str, Any] = {}
    if not gpu and only is None and allocator_state() == "glibc tuned":
        try:
            cmd = _bench_command(method, student, teacher, str(dev), steps, batch_size)
            rows[auto_name + DEFAULT_MALLOC] = _default_malloc_row(
                [*cmd, "--eval-images", str(n_test)]
            )
        except KdlibError as e:  # the rest of the table still stands
            notes["default_malloc_error"] = str(e)
    flops = training_flops_per_image(
        create_model(student, 10), create_model(teacher, 10) if teacher else None
    )
    for row in rows.values():
        row["achieved_tflops"] = flops * row["images_per_second"] / 1e12
    result: dict[str, Any] = {
        "train_gflop_per_image": flops / 1e9,
        "method": method,
        "student": student,
        "teacher": teacher,
        "device": str(dev),
        "device_name": device_name(dev),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "timed_steps": steps,
        "auto_variant": auto_name,
        "results": rows,
    }
    if not gpu:
        result["cpu"] = cpu_speed_facts()
        result["cpu_allocator"] = allocator_state()
        result["max_rss_mib"] = max_rss_mib()
    result.update(notes)
    if auto_name in rows and "classic" in rows:
        result["speedup_vs_classic"] = (
            rows["classic"]["seconds_per_epoch"] / rows[auto_name]["seconds_per_epoch"]
        )
    base_name = cpu_setting_name("fp32", False)
    if not gpu and auto_name in rows and base_name in rows:
        result["auto_speedup_vs_fp32_contiguous"] = (
            rows[base_name]["seconds_per_epoch"] / rows[auto_name]["seconds_per_epoch"]
        )
    if packed:
        result["packed"] = [
            run_packed(n, method, student, teacher, str(dev), steps, batch_size, cpu_allocator)
            for n in packed
        ]
    return result


def max_rss_mib() -> float | None:
    """Peak resident memory of this process so far, in MiB (Linux only; every variant
    timed in it counts)."""
    if not sys.platform.startswith("linux"):
        return None
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux says KiB


def _bench_command(
    method: str, student: str, teacher: str | None, device: str, steps: int, batch_size: int
) -> list[str]:
    """``kdlib bench`` of the ``auto`` setting alone, printing its JSON line only."""
    return [
        sys.executable, "-m", "kdlib", "bench", "--method", method, "--student", student,
        "--teacher", teacher or "none", "--device", device, "--steps", str(steps),
        "--batch-size", str(batch_size), "--only", "auto", "--json-only", "--no-compile",
    ]  # fmt: skip


def _json_of(child: subprocess.Popen) -> dict[str, Any]:
    out, err = child.communicate()
    if child.returncode != 0:
        raise KdlibError(f"bench worker failed: {err.strip().splitlines()[-1:]}")
    return json.loads(out.strip().splitlines()[-1])


def _default_malloc_row(cmd: list[str]) -> dict[str, Any]:
    """The ``auto`` setting timed by ``cmd`` (``_bench_command``) in a process of its own
    with glibc's default malloc."""
    cmd = [*cmd, "--cpu-allocator", "default", "--threads", str(torch.get_num_threads())]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result = _json_of(child)
    row = next(iter(result["results"].values()))
    row["speed"] = {**row["speed"], "cpu_allocator": result["cpu_allocator"]}
    row["max_rss_mib"] = result["max_rss_mib"]
    return row


def run_packed(
    processes: int,
    method: str,
    student: str,
    teacher: str | None,
    device: str,
    steps: int,
    batch_size: int,
    cpu_allocator: str = "tuned",
) -> dict[str, Any]:
    """``processes`` benches of the ``auto`` setting at once, each in its own process with
    its share of the cores (as ``kdlib sweep --parallel`` gives them): their images per
    second added up, against one process."""
    threads = worker_threads(processes)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = _bench_command(method, student, teacher, device, steps, batch_size)
    cmd += ["--threads", str(threads), "--cpu-allocator", cpu_allocator]
    children = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(processes)
    ]
    rows = [_json_of(child) for child in children]
    per = [next(iter(r["results"].values())) for r in rows]
    total = sum(r["images_per_second"] for r in per)
    return {
        "processes": processes,
        "threads_each": threads,
        "variant": rows[0]["auto_variant"],
        "images_per_second_total": total,
        "seconds_per_epoch_each": [r["seconds_per_epoch"] for r in per],
        # seconds for N epochs of N runs, divided by N: the cost of one epoch when packed
        "seconds_per_epoch_effective": EPOCH_IMAGES / total,
    }


def format_table(result: dict[str, Any]) -> str:
    """The human-readable table ``kdlib bench`` prints before its JSON line."""
    rows = result["results"]
    ref_name = result["auto_variant"] if result["auto_variant"] in rows else next(iter(rows))
    ref = rows[ref_name]["seconds_per_epoch"]
    lines = [
        f"{result['method']}: {result['teacher'] or '-'} -> {result['student']} on "
        f"{result['device_name']} (torch {result['torch']}, batch {result['batch_size']}, "
        f"{result['timed_steps']} timed steps)",
        f"{'variant':<36} {'s/epoch':>9} {'images/s':>10} {'eval 10k (s)':>13} "
        f"{'vs ' + ref_name:>10} {'TFLOP/s':>8}",
    ]
    for name, row in rows.items():
        mark = "  <- auto" if name == result["auto_variant"] else ""
        lines.append(
            f"{name:<36} {row['seconds_per_epoch']:>9.2f} {row['images_per_second']:>10.0f} "
            f"{row['eval_seconds_10k']:>13.3f} {row['seconds_per_epoch'] / ref:>9.2f}x"
            f" {row['achieved_tflops']:>8.3f}{mark}"
        )
    cpu = result.get("cpu")
    if cpu:
        flags = [k for k in ("amx_bf16", "avx512_bf16") if cpu.get(k)]
        lines.append(
            f"auto on this CPU ({cpu['cpu_name']}, native bf16: "
            f"{', '.join(flags) if flags else 'none'}): {result['auto_variant']}; "
            f"malloc: {result.get('cpu_allocator', 'not recorded')}"
        )
    if "default_malloc_error" in result:
        lines.append(
            f"auto with glibc's default malloc not timed: {result['default_malloc_error']}"
        )
    if "auto_speedup_vs_fp32_contiguous" in result:
        lines.append(
            f"auto vs fp32 contiguous: {result['auto_speedup_vs_fp32_contiguous']:.2f}x faster"
        )
    if "speedup_vs_classic" in result:
        lines.append(
            f"speed-up of the fast loop over the classic loop: "
            f"{result['speedup_vs_classic']:.1f}x; "
            f"{result['train_gflop_per_image']:.3f} GFLOP per training image"
        )
    for pk in result.get("packed", []):
        lines.append(
            f"packed x{pk['processes']} ({pk['threads_each']} threads each, {pk['variant']}): "
            f"{pk['images_per_second_total']:.0f} images/s in total, "
            f"{pk['seconds_per_epoch_effective']:.2f} s per epoch per run"
        )
    return "\n".join(lines)
