"""The ``kdlib`` command line. Bad input exits with code 2 and one line saying what to do."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from kdlib.allocator import MODES as ALLOCATOR_MODES
from kdlib.errors import KdlibError


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="cifar10", help="cifar10 or cifar100 (default cifar10)")
    p.add_argument("--data-dir", help="where the data is (default $KDLIB_DATA_DIR or ./data)")
    p.add_argument(
        "--cache-dir",
        help="prepared arrays and weights (default $KDLIB_CACHE_DIR or ~/.cache/kdlib)",
    )


def _parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KdlibError(f"--param {item!r}: expected KEY=VALUE, e.g. --param T=4")
        out[key] = value
    return out


def cmd_models(args: argparse.Namespace) -> None:
    from kdlib.models import create_model, list_models, model_description

    width = max(len(n) for n in list_models())
    print(f"{'name':<{width}} {'params (10 classes)':>20}  description")
    for name in list_models():
        n = sum(p.numel() for p in create_model(name, 10).parameters())
        print(f"{name:<{width}} {n:>20,}  {model_description(name)}")


def cmd_methods(args: argparse.Namespace) -> None:
    from kdlib.methods import list_methods, method_class

    for name in list_methods():
        cls = method_class(name)
        params = ", ".join(f"{k}={p.default}" for k, p in cls.params.items())
        teacher = (
            "teachers" if cls.multi_teacher else "teacher" if cls.needs_teacher else "no teacher"
        )
        print(f"{name:<10} {cls.description} [{teacher}{'; ' + params if params else ''}]")
        if "variant" in cls.params:  # what -p variant=seed changes (the seed paper's code)
            seed = cls.params["variant"].help.split("seed: as the seed paper's code ran it ")[-1]
            print(f"{'':<10}   variants: original (default) | seed {seed}")


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from kdlib.data import load_dataset, prepare_dataset

    prepare_dataset(
        args.dataset,
        data_dir=args.data_dir,
        cache_dir=args.cache_dir,
        download=args.download,
        force=args.force,
    )
    data = load_dataset(args.dataset, data_dir=args.data_dir, cache_dir=args.cache_dir)
    print(
        json.dumps(
            {
                "dataset": data.name,
                "train": len(data.train_labels),
                "test": len(data.test_labels),
                "classes": len(data.classes),
                "fingerprint": data.fingerprint,
            }
        )
    )


def cmd_eval(args: argparse.Namespace) -> None:
    from kdlib.data import DATASETS, DeviceLoader, load_dataset, split_validation
    from kdlib.environment import resolve_device
    from kdlib.evaluate import default_eval_batch_size, evaluate
    from kdlib.models import create_model, list_models, load_weights

    if args.model not in list_models():
        raise KdlibError(
            f"--model={args.model!r}: unknown model; valid: {', '.join(list_models())}"
        )
    if args.batch_size is not None and args.batch_size < 1:
        raise KdlibError(f"--batch-size={args.batch_size}: an integer >= 1")
    if args.dataset not in DATASETS:
        raise KdlibError(f"--dataset={args.dataset!r}: valid: {', '.join(DATASETS)}")
    if args.split == "val" and args.val_size < 1:
        raise KdlibError(
            f"--val-size={args.val_size}: --split val needs a validation split of >= 1 image"
        )
    if args.val_size < 0:
        raise KdlibError(f"--val-size={args.val_size}: an integer >= 0")
    device = resolve_device(args.device)
    model = create_model(args.model, DATASETS[args.dataset].num_classes)
    load_weights(model, args.checkpoint)  # a bad checkpoint fails before the data is touched
    data = load_dataset(args.dataset, data_dir=args.data_dir, cache_dir=args.cache_dir)
    if args.split == "test":
        images, labels = data.test_images, data.test_labels
    else:
        train_idx, val_idx = split_validation(data.train_labels, args.val_size)
        idx = val_idx if args.split == "val" else train_idx
        images, labels = data.train_images[idx], data.train_labels[idx]
    loader = DeviceLoader(
        images,
        labels,
        args.batch_size or default_eval_batch_size(device),
        mean=data.mean,
        std=data.std,
        device=device,
        shuffle=False,
        augment=False,
    )
    result = evaluate(model.to(device), loader)
    print(
        json.dumps(
            {
                "model": args.model,
                "checkpoint": args.checkpoint,
                "dataset": args.dataset,
                "split": args.split,
                "accuracy": round(result["accuracy"], 4),
                "n": result["n"],
                "correct": result["correct"],
                "loss": round(result["loss"], 6),
                "device": str(device),
            }
        )
    )


def cmd_train(args: argparse.Namespace) -> None:
    from kdlib.config import TrainConfig, setting_names, settings_where
    from kdlib.io import read_yaml
    from kdlib.runs import RunRecord, is_run_config
    from kdlib.train import run_method, run_training

    given = vars(args)
    if "resume" in given:
        run_dir = Path(args.resume)
        if not (run_dir / "config.json").is_file():
            raise KdlibError(f"--resume={args.resume!r}: not a run directory (no config.json)")
        # Where it runs and where files go may change, not what it computes (the runs
        # folder is the run directory's parent).
        where = [k for k in settings_where(identity=False) if k != "runs_dir"]
        extra = sorted(set(given) - {"resume", "quiet", "func", "command", *where})
        if extra:
            flag = "--" + extra[0].replace("_", "-")
            flags = ", ".join("--" + k.replace("_", "-") for k in where)
            raise KdlibError(
                f"--resume takes its settings from {run_dir}/config.json, not from {flag}; "
                f"only {flags} may change (start a new run to change anything else)"
            )
        values = TrainConfig.from_run(RunRecord(run_dir).config()).to_dict()
        values["runs_dir"] = str(run_dir.parent)
        for key in where:
            if key in given:
                values[key] = given[key]
        cfg = TrainConfig.from_dict(values)
        print(run_training(cfg, progress="quiet" not in given, resume=run_dir), flush=True)
        return
    values: dict[str, Any] = {}
    if "config" in given:
        loaded = read_yaml(args.config, f"--config={args.config!r}")
        if not isinstance(loaded, dict):
            raise KdlibError(f"--config={args.config!r}: expected a mapping of settings")
        if is_run_config(loaded):  # a run's config.json: its settings repeat the run
            loaded = TrainConfig.from_run(loaded).to_dict()
        values.update(loaded)
    values.update({k: v for k, v in given.items() if k in setting_names()})
    if "param" in given:
        params = dict(values.get("method_params") or {})
        params.update(_parse_params(args.param))
        values["method_params"] = params
    cfg = TrainConfig.from_dict(values, where=args.config if "config" in given else "kdlib train")
    for run_dir in run_method(cfg, progress="quiet" not in given):
        print(run_dir, flush=True)


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise KdlibError(f"--set {item!r}: expected KEY=VALUE, e.g. --set epochs=1")
        out[key] = yaml.safe_load(value)
    return out


def _set_threads(threads: int | None) -> None:
    """``--threads N``: torch's intra-op threads for this process (a packed worker's share)."""
    if threads is None:
        return
    if threads < 1:
        raise KdlibError(f"--threads={threads}: an integer >= 1")
    import torch

    torch.set_num_threads(threads)


def _print_sweep_state(sweep: Any, overrides: dict[str, Any]) -> None:
    """``kdlib sweep --dry-run``: a line per planned run with its state, then the counts."""
    from kdlib.claim import NotPrepared
    from kdlib.runs import FINISHED
    from kdlib.sweep import sweep_state

    try:
        state = sweep_state(sweep, overrides)
        hint = ""
    except NotPrepared as e:  # the runs without their state
        state = sweep_state(sweep, overrides, with_state=False)
        hint = f"state unknown: {e}"
    names = []
    for _, r in state.iterrows():
        teacher = f" from {r['teacher']}" if isinstance(r["teacher"], str) and r["teacher"] else ""
        method = f"{r['method']}[{r['params']}]" if r["params"] else r["method"]
        role = "" if r["role"] == "run" else f"  ({r['role']}, trained first)"
        names.append(
            f"{method} {r['student']}{teacher} {r['dataset']} e{r['epochs']} s{r['seed']}{role}"
        )
    width = max(map(len, names), default=0)
    for name, (_, r) in zip(names, state.iterrows(), strict=True):
        if hint:
            print(name)
            continue
        facts = [f"{r['status']:<11}", f"{r['epochs_done']}/{r['epochs']}"]
        acc = r["final_test_acc"]
        if isinstance(acc, float) and acc == acc:  # NaN: no epoch yet
            facts.append(f"{acc:.2f}%" if r["status"] in FINISHED else f"last epoch {acc:.2f}%")
        start = r["resumes_at"]
        if r["status"] == "interrupted" and start == start:  # NaN: not interrupted
            start = int(start)
            facts.append(f"resumes at epoch {start}" if start else "restarts (no checkpoint here)")
        left = r["seconds_left"]
        if isinstance(left, float) and left == left:
            facts.append(f"about {_duration(left)} left at its pace")
        if isinstance(r["run_dir"], str):
            facts.append(_shown_path(r["run_dir"]))
        print(f"{name:<{width}}  {'  '.join(facts)}")
    for where, reason in sweep.skipped:
        print(f"not applicable: {where}: {reason}")
    if hint:
        print(hint)
    else:
        counts = state["status"].value_counts()
        print(f"{len(state)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()))


def _duration(seconds: float) -> str:
    """``47 min`` or ``2.3 h``: how long, to the precision an estimate deserves."""
    minutes = seconds / 60
    return f"{max(1, round(minutes))} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def _shown_path(path: str) -> str:
    """``path`` relative to the working folder where it is below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def cmd_sweep(args: argparse.Namespace) -> int:
    from kdlib.sweep import load_sweep, run_sweep, run_sweep_parallel

    if args.parallel < 1:
        raise KdlibError(f"--parallel={args.parallel}: an integer >= 1")
    _set_threads(args.threads)
    sweep = load_sweep(args.file)
    overrides = _parse_overrides(args.set)
    if args.dry_run:  # every run it trains, teachers and assistants first: where each stands
        _print_sweep_state(sweep, overrides)
        return
    if args.parallel > 1:
        sweep.expand(overrides)  # every run is checked here, before any worker starts
        if args.executor != "local":
            raise KdlibError("--parallel packs runs on this machine: use it with --executor local")
        table = run_sweep_parallel(
            args.file, args.set, args.parallel, not args.quiet, args.via, args.threads
        )
    else:
        slurm = {}
        if args.slurm_partition:
            slurm["slurm_partition"] = args.slurm_partition
        if args.timeout_min:
            slurm["timeout_min"] = args.timeout_min
        table = run_sweep(
            sweep,
            overrides,
            progress=not args.quiet,
            executor=args.executor,
            via=args.via,
            slurm=slurm,
            jobs_dir=args.jobs_dir,
        )
    if args.summary_json:
        from kdlib.io import write_text

        write_text(args.summary_json, table.to_json(orient="records"))
    if "role" in table.columns and (table["role"] == "run").all():
        table = table.drop(columns="role")  # only runs asked for: nothing to tell apart
    cols = [
        c
        for c in (
            "status",
            "role",
            "method",
            "params",
            "student",
            "teacher",
            "seed",
            "final_test_acc",
            "run_dir",
        )
        if c in table.columns
    ]
    from kdlib.sweep import FAILED

    failed = table[table["status"].isin(FAILED)] if "status" in table.columns else table[:0]
    if len(failed) and "error" in table.columns:  # why each one failed, in one short line
        table = table.assign(
            error=[
                str(e).splitlines()[0][:100] if isinstance(e, str) else "" for e in table["error"]
            ]
        )
        cols.append("error")
    print(table[cols].to_string(index=False))
    if len(failed):
        print(f"kdlib: {len(failed)} of {len(table)} runs failed", file=sys.stderr)
        return 1
    return 0


def cmd_bench(args: argparse.Namespace) -> None:
    from kdlib.bench import format_table, run_bench

    if args.steps is not None and args.steps < 1:
        raise KdlibError(f"--steps={args.steps}: an integer >= 1")
    if args.eval_images is not None and args.eval_images < 1:
        raise KdlibError(f"--eval-images={args.eval_images}: an integer >= 1")
    teacher = None if args.teacher in ("", "none") else args.teacher
    _set_threads(args.threads)
    packed = None
    if args.packed:
        try:
            packed = [int(n) for n in args.packed.split(",")]
        except ValueError:
            packed = None
        if not packed or any(n < 1 for n in packed):
            raise KdlibError(f"--packed={args.packed!r}: comma-separated integers >= 1, e.g. 1,2")
    result = run_bench(
        method=args.method,
        student=args.student,
        teacher=teacher,
        device=args.device,
        steps=args.steps,
        batch_size=args.batch_size,
        ablate=args.ablate,
        compile=args.compile,
        num_workers=args.num_workers,
        only=args.only,
        packed=packed,
        cpu_allocator=args.cpu_allocator,
        eval_images=args.eval_images,
    )
    if not args.json_only:
        print(format_table(result))
    print(json.dumps(result))


def cmd_runs(args: argparse.Namespace) -> None:
    from kdlib.runs import load_runs

    df = load_runs(args.path)
    given = [c for c in df.columns if c.startswith("method_params.")]
    if given:  # the method parameters given (a variant, T, ...), in one column
        df = df.assign(
            params=[
                ",".join(
                    f"{c[len('method_params.') :]}={v}"
                    for c, v in zip(given, row, strict=True)
                    if isinstance(v, str | int | float) and v == v
                )
                for row in df[given].itertuples(index=False)
            ]
        )
    cols = [
        c
        for c in (
            "run_id",
            "status",
            "method",
            "params",
            "speed.precision",
            "student",
            "teacher",
            "epochs",
            "seed",
            "final_test_acc",
            "test_acc_at_best_val",
        )
        if c in df.columns
    ]
    print(df[cols].to_string(index=False) if len(df) else f"no runs in {args.path}")


def _comma_floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split(","))


_comma_floats.__name__ = "comma-separated numbers"  # argparse names it in its message


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One ``kdlib train`` flag per setting of the catalogue (``kdlib.config``), grouped
    as the catalogue groups them; ``-p KEY=VALUE`` sets the method's parameters."""
    from kdlib.config import GROUPS, described_settings, scalar_type

    groups = {name: parser.add_argument_group(f"settings: {text}") for name, text in GROUPS.items()}
    for name, entry, default in described_settings():
        group = groups[entry.group]
        if name == "method_params":
            group.add_argument(
                "-p",
                "--param",
                action="append",
                metavar="KEY=VALUE",
                help="method parameter, e.g. -p T=4 -p lambda=0.7 (see `kdlib methods`)",
            )
            continue
        if not entry.cli:
            continue
        flag = "--" + name.replace("_", "-")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        text = entry.help + ("" if default is None else f" (default {shown})")
        kind = scalar_type(name)
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        elif kind is tuple:
            group.add_argument(flag, type=_comma_floats, metavar="F,F", help=text)
        else:
            group.add_argument(flag, type=kind, choices=entry.choices or None, help=text)


class UsageError(KdlibError):
    """A malformed command line (unknown flag, missing value, wrong type)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is one line and exit code 2, like every other error."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kdlib", description="Knowledge distillation for CIFAR, reproducibly.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("models", help="list the model architectures").set_defaults(func=cmd_models)
    sub.add_parser("methods", help="list the distillation methods").set_defaults(func=cmd_methods)

    data = sub.add_parser("data", help="prepare datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    prep = data_sub.add_parser("prepare", help="decode, verify and cache a dataset")
    _add_data_args(prep)
    prep.add_argument("--download", action="store_true", help="download with torchvision")
    prep.add_argument("--force", action="store_true", help="rebuild the cache even if intact")
    prep.set_defaults(func=cmd_data_prepare)

    ev = sub.add_parser("eval", help="accuracy of a checkpoint; prints one JSON line")
    ev.add_argument("--model", required=True)
    ev.add_argument("--checkpoint", required=True)
    ev.add_argument("--split", choices=("test", "val", "train"), default="test")
    ev.add_argument("--val-size", type=int, default=5000)
    ev.add_argument("--batch-size", type=int, help="default 1000 on a GPU, 100 on a CPU")
    ev.add_argument("--device", default="auto", help="auto, cpu, cuda (default auto)")
    _add_data_args(ev)
    ev.set_defaults(func=cmd_eval)

    # Unset flags stay unset (SUPPRESS) so that --config values and TrainConfig defaults apply.
    tr = sub.add_parser(
        "train",
        help="train one run (or a grid method's runs); prints each run directory",
        argument_default=argparse.SUPPRESS,
    )
    tr.add_argument(
        "--config",
        help="YAML file of settings (TrainConfig fields), or a run's config.json; flags override",
    )
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or failed run")
    _add_setting_flags(tr)
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(func=cmd_train)

    sw = sub.add_parser("sweep", help="run a YAML grid of runs (skips completed ones)")
    sw.add_argument("file", help="sweep file, e.g. sweeps/paper_table3.yaml")
    sw.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of every run, e.g. --set epochs=1 --set train_limit=2000",
    )
    sw.add_argument(
        "--dry-run",
        action="store_true",
        help="list the runs and where each stands (from the run records); run nothing",
    )
    sw.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="N runs at once on this machine (separate processes sharing the GPU)",
    )
    sw.add_argument("--summary-json", help=argparse.SUPPRESS)  # used by --parallel workers
    sw.add_argument(
        "--threads",
        type=int,
        help="torch threads per process (default: torch's; with --parallel N, cores/N each)",
    )
    sw.add_argument(
        "--executor",
        choices=("local", "slurm", "submitit-local"),
        default="local",
        help="local: here, one after another; slurm: one job (1 GPU) per run via submitit",
    )
    sw.add_argument(
        "--via",
        choices=("direct", "notebook"),
        default="direct",
        help="notebook: execute notebooks/run.ipynb with papermill, kept in the run's folder",
    )
    sw.add_argument("--slurm-partition", help="slurm partition for --executor slurm")
    sw.add_argument("--timeout-min", type=int, help="time limit of each job, in minutes")
    sw.add_argument("--jobs-dir", default="runs/.jobs", help="submitit's logs and pickles")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=cmd_sweep)

    be = sub.add_parser("bench", help="time the fast and the classic training loop")
    be.add_argument("--method", default="kd")
    be.add_argument("--student", default="resnet8")
    be.add_argument("--teacher", default="resnet26", help="'none' for methods without one")
    be.add_argument("--device", default="auto")
    be.add_argument("--steps", type=int, help="timed steps per variant (GPU 100, CPU 5)")
    be.add_argument("--batch-size", type=int, default=128)
    be.add_argument("--ablate", action="store_true", help="also turn techniques off one by one")
    be.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile in the fast loop (default: on a GPU)",
    )
    be.add_argument("--num-workers", type=int, default=4, help="classic loop's workers")
    be.add_argument("--only", help="time only this variant ('auto': the one auto picks)")
    be.add_argument(
        "--packed", help="also time N runs packed at once, e.g. 1,2 (each gets cores/N threads)"
    )
    be.add_argument("--threads", type=int, help="torch threads of this process")
    be.add_argument(
        "--eval-images",
        type=int,
        help="images the evaluation is timed on (GPU 10000, CPU 1000), reported per 10k",
    )
    be.add_argument(
        "--cpu-allocator",
        choices=ALLOCATOR_MODES,
        default="tuned",
        help="malloc on a CPU, as for training (kdlib.allocator); the whole CPU table also "
        "times auto with glibc's default",
    )
    be.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    be.set_defaults(func=cmd_bench)

    rs = sub.add_parser("runs", help="list recorded runs")
    rs.add_argument("path", nargs="?", default="runs")
    rs.set_defaults(func=cmd_runs)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so a run records it as SIGINT does."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated("terminated (SIGTERM)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kdlib`` command; exit 0, 1 (some runs of a sweep failed), 2
    (bad input, one line on stderr), 130 (interrupted) or 143 (terminated)."""
    import signal

    previous = None
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run(argv)
    finally:
        # A caller in the same process (a notebook, pytest) gets its own handler back, so
        # a later SIGTERM is not raised as ours inside code that does not expect it.
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code = args.func(args)
    except KdlibError as e:
        print(f"kdlib: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("kdlib: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("kdlib: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `kdlib models | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
