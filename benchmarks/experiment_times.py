"""How long ``rlkit train experiments/X.yaml`` takes, as a user types it, for the experiments
whose timings the README, the guide and the YAML headers quote; with Stable-Baselines3's
rl-baselines3-zoo PPO on CartPole-v1 as the reference, in the same run.

Each trial is a fresh process: ``rlkit train FILE --seed S --no-progress`` from process start
to exit (imports, set-up, training to the file's target or budget, evaluations, checkpoint,
summary, curves.png). The reference is a fresh ``python`` process that imports SB3, trains the
zoo's PPO until 20 deterministic evaluation episodes average 475 (every 5,000 steps, the
protocol of ``cartpole_vs_sb3.py``) and exits. Trials of all experiments and the reference
alternate seed by seed, so they meet the same machine load.

    python benchmarks/experiment_times.py                       # 3 seeds, the default list
    python benchmarks/experiment_times.py --seeds 0 1 2 3 4 --experiments cartpole cartpole_gpu
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

from cartpole_vs_sb3 import TARGET, machine

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["cartpole", "cartpole_gpu", "cartpole_novel_framestack", "pendulum_gpu"]

SB3_TO_TARGET = """
import sys
sys.path.insert(0, {bench!r})
from cartpole_vs_sb3 import sb3_timed_eval, sb3_zoo_model
import torch
torch.set_num_threads(1)
model = sb3_zoo_model("ppo", {seed})
model.learn(total_timesteps=100_000, callback=sb3_timed_eval({seed}, 100_000, stop_at_target=True))
"""


def rlkit_trial(name: str, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rlkit-times-") as tmp:
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        proc = subprocess.run(["rlkit", "train", f"experiments/{name}.yaml", "--seed", str(seed),
                               "--no-progress", "--run-dir", str(run_dir)],
                              capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{name} seed {seed} failed:\n{proc.stderr[-3000:]}")
        summary = json.loads((run_dir / "summary.json").read_text())
    return {"experiment": name, "seed": seed, "command_s": wall, "status": summary["status"],
            "final_eval": summary["final_eval_return_mean"], "env_steps": summary["env_steps"],
            "run_wall_time_s": summary["wall_time_s"]}


def sb3_trial(seed: int) -> dict[str, Any]:
    code = SB3_TO_TARGET.format(bench=str(Path(__file__).resolve().parent), seed=seed)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"SB3 seed {seed} failed:\n{proc.stderr[-3000:]}")
    return {"experiment": "sb3 zoo PPO CartPole-v1 to 475", "seed": seed, "command_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--experiments", nargs="+", default=DEFAULT)
    parser.add_argument("--no-sb3", action="store_true")
    parser.add_argument("--out", type=Path, help="raw results as JSON")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for seed in args.seeds:
        for name in args.experiments:
            results.append(rlkit_trial(name, seed))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        if not args.no_sb3:
            results.append(sb3_trial(seed))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)

    print(f"| experiment | seeds | whole command, s: median (min-max) | summary's wall time, s "
          f"| env steps | final eval | status | SB3 to {TARGET:g} / this |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    ref = [r["command_s"] for r in results if "status" not in r]
    for name in args.experiments:
        rows = [r for r in results if r["experiment"] == name]
        times = [r["command_s"] for r in rows]
        med = statistics.median(times)
        evals = [r["final_eval"] for r in rows if r["final_eval"] is not None]
        steps = [r["env_steps"] for r in rows]
        walls = [r["run_wall_time_s"] for r in rows]
        ratio = (f"{statistics.median(ref) / med:.2f}" if ref and name.startswith("cartpole")
                 else "-")  # the reference solves CartPole-v1 only
        print(f"| {name} | {len(rows)} | {med:.1f} ({min(times):.1f}-{max(times):.1f}) | "
              f"{min(walls):.1f}-{max(walls):.1f} | "
              f"{min(steps):,}-{max(steps):,} | {min(evals):.1f}-{max(evals):.1f} | "
              f"{', '.join(sorted({r['status'] for r in rows}))} | {ratio} |")
    if ref:
        print(f"| SB3 zoo PPO CartPole-v1 to {TARGET:g} (reference) | {len(ref)} | "
              f"{statistics.median(ref):.1f} ({min(ref):.1f}-{max(ref):.1f}) | | | | | 1.00 |")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
