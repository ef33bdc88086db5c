"""``kdlib bench``: seconds per epoch of the fast and the classic loop, in one process.

Both loops train the same method on the same synthetic uint8 data (timing does not depend
on the pixels or the teacher's weights, so no dataset or checkpoint is needed). Each
variant runs one untimed warm-up pass (worker start-up, torch.compile, cuDNN autotuning),
then a timed pass of ``steps`` steps; seconds per epoch are scaled to 50,000 images.
Variants turn the speed techniques off one at a time to measure what each contributes.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from kdlib.config import TrainConfig
from kdlib.data import dataset_stats
from kdlib.data.cache import CifarData
from kdlib.environment import device_name, resolve_device
from kdlib.evaluate import default_eval_batch_size, evaluate
from kdlib.flops import training_flops_per_image
from kdlib.models import create_model
from kdlib.speed import Speed, resolve_speed

EPOCH_IMAGES = 50_000
TEST_IMAGES = 10_000


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


def variants(device: torch.device, ablate: bool, compile: bool) -> dict[str, dict[str, Any]]:
    """The configurations to time: fast (all techniques), classic, and ablations."""
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
    from kdlib.train import build_method, make_loaders, train_one_epoch

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
) -> dict[str, Any]:
    """Time every variant; returns a JSON-ready dict with one row per variant."""
    dev = resolve_device(device)
    gpu = dev.type == "cuda"
    steps = steps or (100 if gpu else 5)
    compile = gpu if compile is None else compile
    n_test = TEST_IMAGES if gpu else 1000
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
    base.validate()
    rows = {}
    for name, settings in variants(dev, ablate, compile).items():
        rows[name] = _time_variant(base, settings, data, dev)
    fast, classic = rows["fast"], rows["classic"]
    flops = training_flops_per_image(
        create_model(student, 10), create_model(teacher, 10) if teacher else None
    )
    for row in rows.values():
        row["achieved_tflops"] = flops * row["images_per_second"] / 1e12
    return {
        "train_gflop_per_image": flops / 1e9,
        "method": method,
        "student": student,
        "teacher": teacher,
        "device": str(dev),
        "device_name": device_name(dev),
        "torch": torch.__version__,
        "batch_size": batch_size,
        "timed_steps": steps,
        "results": rows,
        "speedup_vs_classic": classic["seconds_per_epoch"] / fast["seconds_per_epoch"],
    }


def format_table(result: dict[str, Any]) -> str:
    """The human-readable table ``kdlib bench`` prints before its JSON line."""
    fast = result["results"]["fast"]["seconds_per_epoch"]
    lines = [
        f"{result['method']}: {result['teacher'] or '-'} -> {result['student']} on "
        f"{result['device_name']} (torch {result['torch']}, batch {result['batch_size']}, "
        f"{result['timed_steps']} timed steps)",
        f"{'variant':<24} {'s/epoch':>9} {'images/s':>10} {'eval 10k (s)':>13} {'vs fast':>8}"
        f" {'TFLOP/s':>8}",
    ]
    for name, row in result["results"].items():
        lines.append(
            f"{name:<24} {row['seconds_per_epoch']:>9.2f} {row['images_per_second']:>10.0f} "
            f"{row['eval_seconds_10k']:>13.3f} {row['seconds_per_epoch'] / fast:>7.2f}x"
            f" {row['achieved_tflops']:>8.3f}"
        )
    lines.append(
        f"speed-up of the fast loop over the classic loop: {result['speedup_vs_classic']:.1f}x;"
        f" {result['train_gflop_per_image']:.3f} GFLOP per training image"
    )
    return "\n".join(lines)
