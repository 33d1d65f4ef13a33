"""Time to solve CartPole: ``experiments/cartpole_gpu.yaml`` (PPO on thousands of torch-native
rlkit/CartPole-v1 envs) against Stable-Baselines3's PPO with rl-baselines3-zoo's CartPole-v1
hyperparameters, in the same run.

Two measurements per seed, each trial in a fresh Python process:

* **whole command** -- wall time of ``rlkit train experiments/cartpole_gpu.yaml --seed S``
  from process start to exit (imports, set-up, training, evaluations, checkpoint, summary);
* **time to 475, in-process** -- for both frameworks: wall time since training started, minus
  the time spent evaluating, at the first evaluation whose mean over 20 deterministic episodes
  reaches 475. rlkit evaluates on its own schedule (``eval.every`` of the experiment file,
  on separate torch-native envs); SB3 every 5,000 env steps on 20 gymnasium CartPole-v1 envs
  (the protocol of ``cartpole_vs_sb3.py``). Both stop at the target.

    python benchmarks/cartpole_gpu_vs_sb3.py --seeds 0 1 2
    python benchmarks/cartpole_gpu_vs_sb3.py --seeds 0 --device cuda     # on a GPU machine
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

from cartpole_vs_sb3 import TARGET, machine, sb3_timed_eval, sb3_zoo_model, timed_trainer_class

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "cartpole_gpu.yaml"
SB3_BUDGET = 100_000


def trial_rlkit(seed: int, device: str) -> dict[str, Any]:
    from rlkit import Plugins, load_experiment

    TimedTrainer = timed_trainer_class()
    plugins = Plugins.load()
    with tempfile.TemporaryDirectory(prefix="rlkit-bench-") as run_dir:
        overrides = [f"train.seed={seed}", f"train.device={device}", f"run.dir={run_dir}",
                     "run.name=run"]
        experiment = load_experiment(EXPERIMENT, plugins, overrides)
        trainer = TimedTrainer(experiment, plugins, progress=False)
        trainer.history = []
        trainer.started = time.perf_counter()
        summary = trainer.run()
    reached = next((h for h in trainer.history if h["return"] >= TARGET), None)
    return {"framework": "rlkit", "seed": seed, "env_steps": summary["env_steps"],
            "time_to_target_s": None if reached is None else reached["train_s"],
            "steps_to_target": None if reached is None else reached["step"],
            "final_return": trainer.history[-1]["return"], "evals": len(trainer.history)}


def trial_sb3(seed: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    model = sb3_zoo_model("ppo", seed)
    callback = sb3_timed_eval(seed, SB3_BUDGET, stop_at_target=True)
    callback.started = time.perf_counter()
    model.learn(total_timesteps=SB3_BUDGET, callback=callback)
    reached = next((h for h in callback.history if h["return"] >= TARGET), None)
    return {"framework": "sb3", "seed": seed, "threads": threads,
            "env_steps": int(model.num_timesteps),
            "time_to_target_s": None if reached is None else reached["train_s"],
            "steps_to_target": None if reached is None else reached["step"],
            "final_return": callback.history[-1]["return"] if callback.history else None,
            "evals": len(callback.history)}


def whole_command(seed: int, device: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rlkit-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        proc = subprocess.run(["rlkit", "train", str(EXPERIMENT), "--seed", str(seed),
                               "--device", device, "--run-dir", str(run_dir), "--no-progress"],
                              capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"rlkit train failed:\n{proc.stderr[-3000:]}")
        summary = json.loads((run_dir / "summary.json").read_text())
    return {"seed": seed, "command_s": wall, "status": summary["status"],
            "final_eval_return_mean": summary["final_eval_return_mean"],
            "env_steps": summary["env_steps"]}


def spawn(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args],
                          capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"trial {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present and len(present) == len(values) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--device", default="cpu", help="rlkit's device (cpu, cuda)")
    parser.add_argument("--sb3-threads", type=int, default=1)
    parser.add_argument("--out", help="raw results as JSON")
    parser.add_argument("--trial", choices=["rlkit", "sb3"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trial:
        seed = args.seeds[0]
        result = (trial_rlkit(seed, args.device) if args.trial == "rlkit"
                  else trial_sb3(seed, args.sb3_threads))
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    info = machine()
    print(f"# {info}")
    rows = []
    for seed in args.seeds:  # interleaved: every framework sees the same machine load
        command = whole_command(seed, args.device)
        ours = spawn(["--trial", "rlkit", "--seeds", str(seed), "--device", args.device])
        ref = spawn(["--trial", "sb3", "--seeds", str(seed), "--sb3-threads",
                     str(args.sb3_threads)])
        rows.append({"seed": seed, "command": command, "rlkit": ours, "sb3": ref})
        r, s = ours["time_to_target_s"], ref["time_to_target_s"]
        ratio = f"{s / r:.1f}x" if r and s else "-"
        print(f"seed {seed}: whole command {command['command_s']:.1f} s "
              f"({command['status']}, eval {command['final_eval_return_mean']:.1f}); "
              f"time to 475: rlkit {r if r is None else round(r, 2)} s at "
              f"{ours['steps_to_target']} steps, SB3 {s if s is None else round(s, 2)} s at "
              f"{ref['steps_to_target']} steps; SB3 / rlkit = {ratio}", flush=True)
    cmd_mean = statistics.fmean(r["command"]["command_s"] for r in rows)
    ours_mean = _mean([r["rlkit"]["time_to_target_s"] for r in rows])
    ref_mean = _mean([r["sb3"]["time_to_target_s"] for r in rows])
    print(f"\nmean whole command: {cmd_mean:.1f} s (max "
          f"{max(r['command']['command_s'] for r in rows):.1f} s)")
    if ours_mean and ref_mean:
        print(f"mean time to 475: rlkit {ours_mean:.2f} s, SB3 {ref_mean:.2f} s, "
              f"SB3 / rlkit = {ref_mean / ours_mean:.1f}x")
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
