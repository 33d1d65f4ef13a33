"""Recovering from a change of the environment: training from scratch against continuing a
trained policy with fixed, adaptive, and adaptive + rollback exploration.

Two shifts, one with discrete and one with continuous actions:

* ``cartpole`` -- PPO (``experiments/cartpole.yaml``) on gymnasium's CartPole-v1; at env step
  40,000 the pole's length triples (0.5 -> 1.5; a policy trained at 0.5 then balances for about
  16 steps). Recovered: an evaluation return of 400.
* ``pendulum`` -- TD3 (``experiments/pendulum_td3_gpu.yaml``) on rlkit/Pendulum-v1 (32 envs, on
  the CPU); at env step 20,480 the pendulum's length goes from 1.0 to 1.5 (the trained policy
  scores about -800). Recovered: an evaluation return of -250.

Conditions (each a fresh process; the change is an ``env.changes`` entry):

* ``scratch`` -- a new agent in the changed env from step 0 (the change at step 0);
* ``fixed`` -- the trained agent continues after the change with the experiment's fixed, low
  exploration (PPO: entropy coefficient 0; TD3: Gaussian action noise sigma 0.1);
* ``adaptive`` -- the same with ``exploration: adaptive`` (Page-Hinkley on the returns) over
  the same base level;
* ``adaptive+rollback`` -- adaptive, plus ``eval.rollback: {drop: 0.5, patience: 2}``.

For each: env steps and training time (wall time minus evaluations) from the change to the
first evaluation at or above the threshold; the continuing conditions count from the change,
not from the start of their run. Evaluations: every 2,500 (CartPole) / 1,024 (Pendulum) env
steps, 20 deterministic episodes each, seeded as rlkit seeds them.

    python benchmarks/drift_recovery.py --seeds 0 1 2 3 4 --out benchmarks/drift_recovery.json \\
        --plot benchmarks/plots/drift_recovery.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cartpole_vs_sb3 import machine, timed_trainer_class  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHIFTS: dict[str, dict[str, Any]] = {
    "cartpole": {"file": "cartpole.yaml", "at": 40_000, "set": {"length": 1.5},
                 "target": 400.0, "after": 100_000, "eval_every": 2_500, "overrides": [],
                 "adaptive": {"name": "adaptive", "base": 0.0, "ceiling": 0.05, "gain": 0.05,
                              "decay": 20_000}},
    "pendulum": {"file": "pendulum_td3_gpu.yaml", "at": 20_480, "set": {"l": 1.5},
                 "target": -250.0, "after": 61_440, "eval_every": 1_024,
                 "overrides": ["train.device=cpu"],
                 "adaptive": {"name": "adaptive", "base": 0.1, "ceiling": 0.5, "gain": 0.4,
                              "decay": 10_000, "noise": "gaussian"}},
}
CONDITIONS = ("scratch", "fixed", "adaptive", "adaptive+rollback")
EVAL_EPISODES = 20


def trial(shift: str, condition: str, seed: int) -> dict[str, Any]:
    from rlkit import Plugins, load_experiment

    spec = SHIFTS[shift]
    at = 0 if condition == "scratch" else spec["at"]
    target = spec["target"]

    class DriftTrainer(timed_trainer_class()):  # type: ignore[misc]
        def evaluate(self, logger: Any) -> Any:
            result = super().evaluate(logger)
            if self.env_steps > at and result.mean >= target:
                self.target_reached = True  # recovered: stop here
            return result

    overrides = [*spec["overrides"], f"train.seed={seed}",
                 f"train.total_steps={at + spec['after']}", "eval.target_return=null",
                 f"eval.every={spec['eval_every']}", f"eval.episodes={EVAL_EPISODES}",
                 "train.checkpoint_every=0",
                 "env.changes=" + json.dumps([{"at_step": at, "set": spec["set"]}])]
    if condition.startswith("adaptive"):
        overrides.append("exploration=" + json.dumps(spec["adaptive"]))
    if condition == "adaptive+rollback":
        overrides.append("eval.rollback={drop: 0.5, patience: 2}")
    plugins = Plugins.load()
    with tempfile.TemporaryDirectory(prefix="rlkit-drift-") as run_dir:
        overrides += [f"run.dir={run_dir}", "run.name=run"]
        experiment = load_experiment(ROOT / "experiments" / spec["file"], plugins, overrides)
        trainer = DriftTrainer(experiment, plugins, progress=False)
        trainer.history = []
        trainer.started = time.perf_counter()
        summary = trainer.run()
    history = trainer.history
    at_change = next((h for h in history if h["step"] >= at), None) if at else \
        {"step": 0, "train_s": 0.0, "return": None}
    recovered = next((h for h in history if h["step"] > at and h["return"] >= target), None)
    return {
        "shift": shift, "condition": condition, "seed": seed, "history": history,
        "return_after_change": None if at_change is None else at_change["return"],
        "steps_to_recover": None if recovered is None or at_change is None else
        recovered["step"] - at,
        "time_to_recover_s": None if recovered is None or at_change is None else
        recovered["train_s"] - at_change["train_s"],
        "rollbacks": summary.get("rollbacks", []),
    }


def spawn(shift: str, condition: str, seed: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--trial", shift, condition,
           "--seeds", str(seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"trial {shift} {condition} seed {seed} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _stats(values: list[float]) -> str:
    if not values:
        return "—"
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:,.0f} ± {spread:,.0f}" if abs(mean) >= 100 else f"{mean:.1f} ± {spread:.1f}"


def markdown(results: list[dict[str, Any]]) -> str:
    rows = ["| shift | condition | recovered | env steps to recover (mean ± std) | training "
            "time to recover, s (mean ± std) | vs scratch (steps) | return right after the "
            "change | rollbacks |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for shift in SHIFTS:
        scratch = [r["steps_to_recover"] for r in results if r["shift"] == shift and
                   r["condition"] == "scratch" and r["steps_to_recover"] is not None]
        base = statistics.fmean(scratch) if scratch else None
        for condition in CONDITIONS:
            rs = [r for r in results if r["shift"] == shift and r["condition"] == condition]
            if not rs:
                continue
            steps = [r["steps_to_recover"] for r in rs if r["steps_to_recover"] is not None]
            times = [r["time_to_recover_s"] for r in rs if r["time_to_recover_s"] is not None]
            after = [r["return_after_change"] for r in rs if r["return_after_change"] is not None]
            ratio = (f"{base / statistics.fmean(steps):.2f}× faster" if base and steps and
                     condition != "scratch" else "—")
            rows.append(f"| {shift} | {condition} | {len(steps)}/{len(rs)} | {_stats(steps)} | "
                        f"{_stats(times)} | {ratio} | "
                        f"{_stats(after) if condition != 'scratch' else '—'} | "
                        f"{sum(len(r['rollbacks']) for r in rs)} |")
    return "\n".join(rows)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(SHIFTS), figsize=(11, 4))
    for ax, shift in zip(axes, SHIFTS, strict=True):
        spec = SHIFTS[shift]
        for condition in CONDITIONS:
            curves = []
            for r in results:
                if r["shift"] != shift or r["condition"] != condition:
                    continue
                at = 0 if condition == "scratch" else spec["at"]
                curves.append({h["step"] - at: h["return"] for h in r["history"]
                               if h["step"] >= at})
            if not curves:
                continue
            steps = sorted(set().union(*curves))
            # a run that recovered stopped: it holds its last return from then on
            grid = np.array([[c.get(s, c[max(k for k in c if k <= s)] if any(
                k <= s for k in c) else np.nan) for s in steps] for c in curves])
            mean = np.nanmean(grid, axis=0)
            ax.plot(steps, mean, label=condition)
            ax.fill_between(steps, np.nanmin(grid, axis=0), np.nanmax(grid, axis=0), alpha=0.15)
        ax.axhline(spec["target"], color="gray", linestyle=":", linewidth=1)
        ax.set_title(f"{shift}: {spec['set']} at step {spec['at']:,}")
        ax.set_xlabel("env steps since the change (scratch: since its start)")
        ax.set_ylabel("evaluation return")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--shifts", nargs="+", choices=sorted(SHIFTS), default=list(SHIFTS))
    parser.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--trial", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trial:
        result = trial(args.trial[0], args.trial[1], args.seeds[0])
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores; torch {info['torch']}; {info['date']}; "
          f"load {info['load_average']}", flush=True)
    results: list[dict[str, Any]] = []
    for seed in args.seeds:
        for shift in args.shifts:
            order = args.conditions if seed % 2 == 0 else list(reversed(args.conditions))
            for condition in order:
                r = spawn(shift, condition, seed)
                results.append(r)
                print(f"  {shift:9s} {condition:18s} seed {seed}: recovered after "
                      f"{r['steps_to_recover']} steps, {r['time_to_recover_s']} s; right "
                      f"after the change {r['return_after_change']}; rollbacks "
                      f"{len(r['rollbacks'])}", flush=True)
                if args.out:
                    args.out.write_text(json.dumps({"machine": info, "shifts": SHIFTS,
                                                    "results": results}, indent=1))
    table = markdown(results)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
