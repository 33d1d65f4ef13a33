"""Compressing trained policies: int8 quantization, pruning with a fine-tune, distillation.

For a CartPole-v1 policy (``experiments/cartpole.yaml``, PPO, trained to an evaluation return
of 475) and a Breakout policy (``experiments/breakout_ppo.yaml``, rlkit/Breakout-v0 images, a
CNN, trained on the CPU for ``--breakout-steps``), in one process:

* **float** -- the teacher as :func:`rlkit.load_policy` gives it (torch eager), as TorchScript
  and as ONNX (onnxruntime);
* **int8** -- ``rlkit export --quantize int8`` (ONNX, onnxruntime; and TorchScript);
* **pruned** -- ``rlkit prune --amount 0.5`` with a fine-tune (torch eager, onnxruntime);
* **distilled** -- ``rlkit distill`` into a student with at most a quarter of the teacher's
  acting-network parameters (torch eager, onnxruntime).

Measured for each: the file (its size, and gzip-compressed, where zeros show), latency at batch
1 and batch 1024 (median of many calls, one intra-op thread for torch and onnxruntime alike),
and the evaluation return over ``--episodes`` episodes whose env seeds are the same for every
variant, as a fraction of the float teacher's return.

    python benchmarks/compression.py --out benchmarks/compression.json \\
        --plot benchmarks/plots/compression.png --markdown
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from cartpole_vs_sb3 import machine  # noqa: E402

TASKS: dict[str, dict[str, Any]] = {
    "cartpole": {
        "experiment": ROOT / "experiments" / "cartpole.yaml",
        "teacher_overrides": [],
        "student": {"algorithm": {"name": "ppo", "n_steps": 32},
                    "backbone": {"name": "mlp", "hidden_sizes": [16], "activation": "tanh"}},
        "finetune_steps": 20_000,
        "distill_steps": 20_000,
    },
    "breakout": {
        "experiment": ROOT / "experiments" / "breakout_ppo.yaml",
        "teacher_overrides": ["train.device=cpu", "eval.target_return=null"],
        "student": {"algorithm": {"name": "ppo", "share_backbone": True},
                    "backbone": {"name": "cnn", "channels": [16], "kernel_sizes": [3],
                                 "strides": [1], "hidden_sizes": [24]}},
        "finetune_steps": 65_536,
        "distill_steps": 262_144,
    },
}
EVAL_SEED = 20_261_204
"""The env seed of every evaluation (episode i: one env seeded ``EVAL_SEED + i``)."""
TARGETS = {"int8_retained": 0.95, "student_retained": 0.95, "student_parameters": 0.25,
           "cartpole_ort_batch1_us": 50.0}


# --- measuring -------------------------------------------------------------------------------


def latency_us(call: Callable[[], Any], *, calls: int, warmup: int) -> float:
    """The median time of one call, in microseconds."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000.0


def evaluate(act: Callable[[np.ndarray], np.ndarray], experiment: Any,
             episodes: int) -> list[float]:
    """The returns of ``episodes`` episodes, one env each, seeded from :data:`EVAL_SEED`;
    ``act`` maps a numpy batch of observations to a numpy batch of actions."""
    from rlkit.environments import make_env
    from rlkit.loop import env_options

    env = make_env(env_options(experiment, for_eval=True), num_envs=episodes)
    obs = env.reset(seed=EVAL_SEED)
    returns = torch.zeros(episodes, dtype=torch.float64)
    done = torch.zeros(episodes, dtype=torch.bool)
    for _ in range(100_000):
        actions = torch.as_tensor(act(obs.cpu().numpy()))
        step = env.step(actions.to(obs.device))
        valid = torch.ones_like(done) if step.valid is None else step.valid.cpu()
        returns += torch.where(done | ~valid, 0.0, step.reward.cpu().double())
        done |= (step.terminated | step.truncated).cpu() & valid
        obs = step.obs
        if bool(done.all()):
            break
    env.close()
    return returns.tolist()


def onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def sizes(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=9))


def acting_parameters(run_dir: Path) -> tuple[int, float]:
    """Parameters of the policy ``load_policy`` rebuilds, and the fraction of them that are
    exactly zero."""
    from rlkit.deploy.policy import load_policy

    params = list(load_policy(run_dir).net.parameters())
    total = sum(p.numel() for p in params)
    return total, sum(int((p == 0).sum()) for p in params) / max(total, 1)


def _bound(call: Callable[[np.ndarray], Any], x: np.ndarray) -> Callable[[], Any]:
    return lambda: call(x)


# --- one task --------------------------------------------------------------------------------


def run_task(name: str, workdir: Path, args: argparse.Namespace, plugins: Any) -> dict[str, Any]:
    import yaml

    from rlkit.config import load_experiment
    from rlkit.deploy.compress import prune
    from rlkit.deploy.distill import distill
    from rlkit.deploy.export import export_policy
    from rlkit.deploy.policy import load_policy
    from rlkit.loop import Trainer

    task = TASKS[name]
    out: dict[str, Any] = {"task": name, "experiment": str(task["experiment"].relative_to(ROOT))}
    overrides = [*task["teacher_overrides"], f"run.dir={workdir}", f"run.name={name}-teacher"]
    if name == "breakout":
        overrides.append(f"train.total_steps={args.breakout_steps}")
    experiment = load_experiment(task["experiment"], plugins, overrides)
    started = time.perf_counter()
    summary = Trainer(experiment, plugins, progress=False).run()
    teacher = Path(summary["run_dir"])
    out["teacher"] = {"env_steps": summary["env_steps"], "train_s": time.perf_counter() - started,
                      "eval_return_mean": summary["final_eval_return_mean"]}
    print(f"[{name}] teacher: {summary['env_steps']:,} env steps, return "
          f"{summary['final_eval_return_mean']:.1f}", flush=True)

    started = time.perf_counter()
    pruned = prune(teacher, 0.5, task["finetune_steps"], workdir / f"{name}-pruned",
                   plugins=plugins).run_dir
    out["pruned"] = {"finetune_steps": task["finetune_steps"],
                     "finetune_s": time.perf_counter() - started}
    student_file = workdir / f"{name}-student.yaml"
    data = yaml.safe_load(Path(task["experiment"]).read_text())
    data.update(task["student"])
    data["algorithm"] = {**data["algorithm"], **task["student"]["algorithm"]}
    data["run"] = {"dir": str(workdir), "name": f"{name}-student"}
    data.setdefault("train", {})["device"] = "cpu"
    data.setdefault("eval", {})["target_return"] = None
    student_file.write_text(yaml.safe_dump(data, sort_keys=False))
    started = time.perf_counter()
    result = distill(teacher, student_file, task["distill_steps"], plugins=plugins)
    student = result.run_dir
    out["distilled"] = {"steps": task["distill_steps"], "distill_s": time.perf_counter() - started,
                        "student": task["student"]}

    files: dict[str, Path] = {}
    for key, run, fmt, quantize in (("float.onnx", teacher, "onnx", None),
                                    ("float.ts", teacher, "torchscript", None),
                                    ("int8.onnx", teacher, "onnx", "int8"),
                                    ("int8.ts", teacher, "torchscript", "int8"),
                                    ("pruned.onnx", pruned, "onnx", None),
                                    ("student.onnx", student, "onnx", None)):
        files[key] = export_policy(run, fmt, workdir / f"{name}-{key.replace('.', '-')}"
                                   f"{'.onnx' if fmt == 'onnx' else '.pt'}", quantize,
                                   plugins=plugins)
    policies = {"float": load_policy(teacher), "pruned": load_policy(pruned),
                "student": load_policy(student)}
    teacher_params, _ = acting_parameters(teacher)
    obs_space = policies["float"].observation_space
    rng = np.random.default_rng(0)

    shape = tuple(obs_space.shape or ())

    def batch(n: int) -> np.ndarray:
        if obs_space.dtype == np.uint8:
            return rng.integers(0, 2, size=(n, *shape)).astype(np.uint8)
        return rng.normal(size=(n, *shape)).astype(np.float32)

    inputs = {1: batch(1), 1024: batch(1024)}
    rows: list[dict[str, Any]] = []

    def add(variant: str, runtime: str, call: Callable[[np.ndarray], Any],
            act: Callable[[np.ndarray], np.ndarray], file: Path | None, run: Path) -> None:
        row: dict[str, Any] = {"variant": variant, "runtime": runtime}
        row["file_bytes"], row["file_gzip_bytes"] = (None, None) if file is None else sizes(file)
        row["parameters"], row["zeros"] = acting_parameters(run)
        for n, x in inputs.items():
            row[f"batch{n}_us"] = latency_us(_bound(call, x), calls=args.calls // (
                1 if n == 1 else 10), warmup=50)
        returns = evaluate(act, experiment, args.episodes)
        row["return_mean"] = statistics.fmean(returns)
        row["return_std"] = statistics.pstdev(returns)
        rows.append(row)
        print(f"[{name}] {variant:>9} {runtime:<12} batch-1 {row['batch1_us']:8.1f} us  "
              f"batch-1024 {row['batch1024_us']:9.1f} us  return {row['return_mean']:.1f}",
              flush=True)

    def eager(policy: Any) -> tuple[Callable[[np.ndarray], Any], Callable[[np.ndarray], Any]]:
        def call(x: np.ndarray) -> Any:
            return policy(torch.from_numpy(x))

        return call, lambda x: np.asarray(policy(x))

    def ort_calls(path: Path) -> tuple[Callable[[np.ndarray], Any], Callable[[np.ndarray], Any]]:
        session = onnx_session(path)
        dtype = np.uint8 if obs_space.dtype == np.uint8 else np.float32

        def call(x: np.ndarray) -> Any:
            return session.run(["action"], {"obs": x})[0]

        return call, lambda x: session.run(["action"], {"obs": x.astype(dtype)})[0]

    def ts_calls(path: Path) -> tuple[Callable[[np.ndarray], Any], Callable[[np.ndarray], Any]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.jit.load(str(path))

        @torch.inference_mode()
        def call(x: np.ndarray) -> Any:
            return module(torch.from_numpy(x))

        return call, lambda x: call(x).numpy()

    add("float", "torch eager", *eager(policies["float"]), None, teacher)
    add("float", "TorchScript", *ts_calls(files["float.ts"]), files["float.ts"], teacher)
    add("float", "onnxruntime", *ort_calls(files["float.onnx"]), files["float.onnx"], teacher)
    add("int8", "onnxruntime", *ort_calls(files["int8.onnx"]), files["int8.onnx"], teacher)
    add("int8", "TorchScript", *ts_calls(files["int8.ts"]), files["int8.ts"], teacher)
    add("pruned 50%", "torch eager", *eager(policies["pruned"]), None, pruned)
    add("pruned 50%", "onnxruntime", *ort_calls(files["pruned.onnx"]), files["pruned.onnx"],
        pruned)
    add("distilled", "torch eager", *eager(policies["student"]), None, student)
    add("distilled", "onnxruntime", *ort_calls(files["student.onnx"]), files["student.onnx"],
        student)
    reference = rows[0]
    for row in rows:
        row["return_retained"] = (row["return_mean"] / reference["return_mean"]
                                  if reference["return_mean"] else None)
        row["batch1_vs_float_eager"] = reference["batch1_us"] / row["batch1_us"]
        row["parameters_vs_teacher"] = row["parameters"] / teacher_params
        float_file = {"onnxruntime": "float.onnx", "TorchScript": "float.ts"}.get(row["runtime"])
        row["file_vs_float"] = (row["file_bytes"] / sizes(files[float_file])[0]
                                if row["file_bytes"] and float_file else None)
    out["rows"] = rows
    return out


# --- reporting -------------------------------------------------------------------------------


def _f(value: float | None, spec: str) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else \
        format(value, spec)


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for task in results["tasks"]:
        t = task["teacher"]
        lines += [f"### {task['task']} ({task['experiment']}; teacher: {t['env_steps']:,} env "
                  f"steps, evaluation return {t['eval_return_mean']:.1f})", "",
                  "| variant | runtime | parameters | zeros | file (KiB) | gzip (KiB) | "
                  "batch-1 (µs) | vs float eager | batch-1024 (µs) | return (mean ± std) | "
                  "retained |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in task["rows"]:
            kib = None if r["file_bytes"] is None else r["file_bytes"] / 1024
            gz = None if r["file_gzip_bytes"] is None else r["file_gzip_bytes"] / 1024
            lines.append(
                f"| {r['variant']} | {r['runtime']} | {r['parameters']:,} "
                f"({r['parameters_vs_teacher']:.0%}) | {r['zeros']:.0%} | {_f(kib, '.1f')} | "
                f"{_f(gz, '.1f')} | {r['batch1_us']:.1f} | {r['batch1_vs_float_eager']:.2f}× | "
                f"{r['batch1024_us']:,.0f} | "
                f"{r['return_mean']:.1f} ± {r['return_std']:.1f} | "
                f"{_f(r['return_retained'], '.1%')} |")
        lines.append("")
    lines += ["### Against the targets", ""]
    for line in results["targets"]:
        lines.append(f"- {line}")
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[str]:
    out = []
    for task in results["tasks"]:
        rows = {(r["variant"], r["runtime"]): r for r in task["rows"]}
        int8 = rows[("int8", "onnxruntime")]
        met = int8["return_retained"] is not None and int8["return_retained"] >= 0.95
        out.append(f"{task['task']}: int8 (ONNX) keeps ≥ 95% of the teacher's return: "
                   f"{'met' if met else 'missed'} ({_f(int8['return_retained'], '.1%')})")
        student = rows[("distilled", "torch eager")]
        met = (student["return_retained"] is not None and student["return_retained"] >= 0.95
               and student["parameters_vs_teacher"] <= 0.25)
        out.append(f"{task['task']}: a student with ≤ 1/4 of the parameters keeps ≥ 95%: "
                   f"{'met' if met else 'missed'} ({student['parameters_vs_teacher']:.1%} of "
                   f"the parameters, {_f(student['return_retained'], '.1%')} of the return)")
        if task["task"] == "cartpole":
            ort = rows[("float", "onnxruntime")]["batch1_us"]
            out.append(f"cartpole: onnxruntime batch-1 latency ≤ 50 µs: "
                       f"{'met' if ort <= 50 else 'missed'} ({ort:.1f} µs)")
    return out


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = results["tasks"]
    fig, axes = plt.subplots(len(tasks), 2, figsize=(12, 3.6 * len(tasks)), squeeze=False)
    for row_axes, task in zip(axes, tasks):
        labels = [f"{r['variant']}\n{r['runtime']}" for r in task["rows"]]
        x = np.arange(len(labels))
        ax = row_axes[0]
        ax.bar(x - 0.2, [r["batch1_us"] for r in task["rows"]], 0.4, label="batch 1")
        ax.bar(x + 0.2, [r["batch1024_us"] / 1024 for r in task["rows"]], 0.4,
               label="batch 1024, per observation")
        ax.set_yscale("log")
        ax.set_ylabel("µs (median)")
        ax.set_title(f"{task['task']}: latency")
        ax.set_xticks(x, labels, fontsize=7, rotation=45, ha="right")
        ax.legend(fontsize=8)
        ax = row_axes[1]
        ax.bar(x, [100 * (r["return_retained"] or 0.0) for r in task["rows"]], color="tab:green")
        ax.axhline(95, color="k", linestyle="--", linewidth=1, label="target 95%")
        ax.set_ylabel("% of the teacher's return")
        ax.set_title(f"{task['task']}: return retained ({results['episodes']} episodes)")
        ax.set_xticks(x, labels, fontsize=7, rotation=45, ha="right")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--breakout-steps", type=int, default=1_000_000,
                        help="the Breakout teacher's training budget (env steps)")
    parser.add_argument("--episodes", type=int, default=32, help="evaluation episodes")
    parser.add_argument("--calls", type=int, default=5000, help="timed calls at batch 1 "
                        "(a tenth of them at batch 1024)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args(argv)

    from rlkit.plugins import Plugins

    plugins = Plugins.load()
    results: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv),
                               "episodes": args.episodes, "calls": args.calls, "tasks": []}
    with tempfile.TemporaryDirectory(prefix="rlkit-compression-") as tmp:
        for name in args.tasks:
            results["tasks"].append(run_task(name, Path(tmp), args, plugins))
            torch.set_num_threads(1)
    results["targets"] = targets(results)
    results["machine"]["load_average_end"] = list(os.getloadavg())
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    if args.plot is not None:
        plot(results, args.plot)
    if args.markdown:
        print(markdown(results))
    else:
        for line in results["targets"]:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
