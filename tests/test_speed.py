"""The speed decision: what ``auto`` picks on a CPU with and without native bf16, how it
is recorded, and how packed runs split the cores (no timing here: see ``kdlib bench``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdlib.config import TrainConfig
from kdlib.runs import RunRecord, config_hash
from kdlib.speed import cpu_speed_facts, resolve_speed, speed_reason, worker_threads
from kdlib.sweep import worker_command

CPU = torch.device("cpu")
AMX = {"cpu_name": "Intel Xeon", "amx_bf16": True, "avx512_bf16": True}
AVX512_BF16 = {"cpu_name": "AMD EPYC", "amx_bf16": False, "avx512_bf16": True}
PLAIN = {"cpu_name": "old x86", "amx_bf16": False, "avx512_bf16": False, "avx2": True}


@pytest.mark.parametrize(
    ("capability", "native"), [(AMX, True), (AVX512_BF16, True), (PLAIN, False), ({}, False)]
)
def test_native_bf16_comes_from_amx_or_avx512_bf16(capability: dict, native: bool) -> None:
    facts = cpu_speed_facts(capability)
    assert facts["native_bf16"] is native
    assert facts["cpu_name"] == capability.get("cpu_name", facts["cpu_name"])


@pytest.mark.parametrize(
    ("capability", "precision"), [(AMX, "bf16"), (AVX512_BF16, "bf16"), (PLAIN, "fp32")]
)
def test_auto_on_a_cpu_uses_bf16_only_where_it_is_native(capability: dict, precision: str) -> None:
    speed = resolve_speed(TrainConfig(device="cpu"), CPU, cpu_speed_facts(capability))
    assert speed.precision == precision
    assert speed.channels_last is True  # faster in fp32 too
    assert speed.fused_optimizer is False


@pytest.mark.parametrize("capability", [AMX, PLAIN])
def test_explicit_settings_and_the_classic_loop_are_not_changed(capability: dict) -> None:
    facts = cpu_speed_facts(capability)
    asked = resolve_speed(TrainConfig(precision="fp32", channels_last=False), CPU, facts)
    assert (asked.precision, asked.channels_last) == ("fp32", False)
    asked = resolve_speed(TrainConfig(precision="bf16"), CPU, facts)
    assert (asked.precision, asked.channels_last) == ("bf16", True)
    classic = resolve_speed(TrainConfig(loop="classic"), CPU, facts)
    assert (classic.precision, classic.channels_last) == ("fp32", False)


def test_the_reason_names_the_cpu_and_its_bf16_features(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kdlib.speed.cpu_speed_facts", lambda: cpu_speed_facts(AVX512_BF16))
    cfg = TrainConfig()
    reason = speed_reason(cfg, CPU, resolve_speed(cfg, CPU, cpu_speed_facts(AVX512_BF16)))
    assert reason.startswith("bf16, channels_last: auto on a CPU (AMD EPYC)")
    assert "avx512_bf16" in reason
    monkeypatch.setattr("kdlib.speed.cpu_speed_facts", lambda: cpu_speed_facts(PLAIN))
    reason = speed_reason(cfg, CPU, resolve_speed(cfg, CPU, cpu_speed_facts(PLAIN)))
    assert reason.startswith("fp32, channels_last:") and "no native bf16" in reason
    explicit = TrainConfig(precision="fp32", channels_last=False)
    assert speed_reason(explicit, CPU, resolve_speed(explicit, CPU)) == "fp32, contiguous: as asked"


@pytest.mark.parametrize(
    ("processes", "cores", "threads"), [(1, 2, 2), (2, 2, 1), (4, 2, 1), (3, 16, 5), (4, 16, 4)]
)
def test_packed_workers_share_the_cores(processes: int, cores: int, threads: int) -> None:
    assert worker_threads(processes, cores) == threads


def test_each_parallel_worker_is_told_its_thread_count(tmp_path: Path) -> None:
    cmd = worker_command("sweeps/x.yaml", ["seed=0"], "direct", tmp_path / "w.json", 3)
    assert cmd[cmd.index("--threads") + 1] == "3"
    assert cmd[cmd.index("--set") + 1] == "seed=0"


def test_a_run_records_the_cpu_and_why_auto_chose(tiny_data: dict, tmp_path: Path) -> None:
    from kdlib.train import run_training

    cfg = TrainConfig(
        epochs=1, batch_size=50, val_size=100, device="cpu", runs_dir=str(tmp_path), **tiny_data
    )
    rec = RunRecord(run_training(cfg, progress=False))
    config, env = rec.config(), rec.env()
    facts = cpu_speed_facts()
    assert env["cpu"]["native_bf16"] is facts["native_bf16"]
    assert env["cpu"]["cpu_name"] == facts["cpu_name"]
    assert config["speed"]["precision"] == ("bf16" if facts["native_bf16"] else "fp32")
    assert config["speed_reason"].startswith(config["speed"]["precision"])
    # the reason is a record, not an identity: the same settings are the same run
    assert config_hash({**config, "speed_reason": "other words"}) == config["config_hash"]


def _loss_and_grads(x: torch.Tensor, y: torch.Tensor, channels_last: bool, dtype=torch.float32):
    import copy

    from kdlib.methods import create_method
    from kdlib.models import create_model

    torch.manual_seed(0)
    student, teacher = create_model("resnet8"), create_model("resnet14")
    method = create_method("kd", copy.deepcopy(student), copy.deepcopy(teacher)).to(dtype)
    x = x.to(dtype)
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    method.train()
    _, losses = method(x, y)
    loss = sum(losses.values())
    loss.backward()
    return loss.item(), [p.grad.double() for p in method.student.parameters()]


def _batches() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    import numpy as np

    from kdlib.data import DeviceLoader
    from kdlib.data.classic import ClassicLoader

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 16)
    kw = {"mean": (0.4914, 0.4822, 0.4465), "std": (0.2023, 0.1994, 0.2010)}
    fast = DeviceLoader(images, labels, 16, shuffle=False, augment=False, **kw)
    classic = ClassicLoader(
        images, labels, 16, shuffle=False, augment=False, num_workers=0, seed=0, **kw
    )
    return next(iter(fast)), next(iter(classic))


def _worst(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((u - v).norm() / v.norm()) for u, v in zip(a, b, strict=True))


def test_fast_and_classic_loops_give_the_same_float32_loss_and_gradients() -> None:
    """The classic loop's batch (DataLoader, Pillow path) and the fast loop's (device
    loader) through one KD distiller in float32: the same loss and gradients."""
    (xf, yf), (xc, yc) = _batches()
    assert torch.equal(xf, xc) and torch.equal(yf, yc)
    l_fast, g_fast = _loss_and_grads(xf, yf, channels_last=False)
    l_classic, g_classic = _loss_and_grads(xc, yc, channels_last=False)
    assert l_fast == l_classic
    assert _worst(g_fast, g_classic) == 0.0


def test_channels_last_float32_gradients_stay_near_float64() -> None:
    """Measured, not assumed: on the CPU the channels_last kernels sum in another order,
    and the small, cancellation-dominated BatchNorm gradients (a sum over N*H*W of terms
    that nearly cancel) come out about 1% off float64, against 2e-6 for the contiguous
    layout; the loss agrees to float32 rounding. Bounded here so a worse kernel shows."""
    (x, y), _ = _batches()
    l64, g64 = _loss_and_grads(x, y, channels_last=False, dtype=torch.float64)
    l_cl, g_cl = _loss_and_grads(x, y, channels_last=True)
    l_c, g_c = _loss_and_grads(x, y, channels_last=False)
    assert l_cl == pytest.approx(l64, rel=1e-5) and l_c == pytest.approx(l64, rel=1e-5)
    assert _worst(g_c, g64) < 1e-4
    assert _worst(g_cl, g64) < 5e-2
