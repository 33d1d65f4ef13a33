"""rlkit's DDPG and TD3 against Stable-Baselines3's, same hyperparameters, same evaluation, same
run.

Three parts (``--part``):

* ``pendulum`` -- gymnasium's Pendulum-v1, rl-baselines3-zoo's hyperparameters (rlkit:
  ``experiments/pendulum_ddpg.yaml`` / ``pendulum_td3.yaml``; SB3: the same values as
  constructor arguments below), 20k env steps: final evaluation return, env steps/s, peak RSS;
* ``wall`` -- wall time to an evaluation return of -200 on Pendulum: rlkit's fastest
  configuration (``experiments/pendulum_td3_gpu.yaml``, torch-native ``rlkit/Pendulum-v1``)
  against SB3's TD3 with the zoo's hyperparameters; both stop at the first evaluation reaching
  -200;
* ``halfcheetah`` -- gymnasium's HalfCheetah-v5 (MuJoCo), TD3 with the zoo's MuJoCo
  hyperparameters (``experiments/halfcheetah_td3.yaml``): return and env steps/s.

The protocol is ``cartpole_vs_sb3.py``'s: every trial runs in a fresh interpreter (its peak
resident memory, ``ru_maxrss``, is its own); the frameworks alternate trial by trial; every
evaluation is ``EVAL_EPISODES`` deterministic episodes on separate environments seeded as rlkit
seeds them, with the clock stopped -- *training time* is wall time since the start of training
minus the time spent in evaluations, and env steps/s divide the env steps by it. ``--threads``
runs each framework at several torch thread counts (the ratios use each framework's fastest).

    python benchmarks/ddpg_vs_sb3.py --part pendulum --seeds 0 1 2 3 4 --out results.json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cartpole_vs_sb3 import (  # noqa: E402
    evaluate_sb3,
    machine,
    timed_trainer_class,
)
from cartpole_vs_sb3 import (  # noqa: E402
    sb3_timed_eval as cartpole_sb3_timed_eval,
)

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = {
    ("pendulum", "ddpg"): "pendulum_ddpg.yaml",
    ("pendulum", "td3"): "pendulum_td3.yaml",
    ("wall", "td3"): "pendulum_td3_gpu.yaml",
    ("halfcheetah", "td3"): "halfcheetah_td3.yaml",
}
ENV_IDS = {"pendulum": "Pendulum-v1", "wall": "Pendulum-v1", "halfcheetah": "HalfCheetah-v5"}
BUDGET = {"pendulum": 20_000, "wall": 20_000, "halfcheetah": 100_000}
"""Env steps per trial: the zoo's 20k for Pendulum, 100k for HalfCheetah. The wall-time part
stops at the target; there rlkit's budget is its experiment file's (``RLKIT_WALL_BUDGET``)."""
RLKIT_WALL_BUDGET = 200_000
EVAL_EVERY = {"pendulum": 5_000, "wall": 1_000, "halfcheetah": 10_000}
"""SB3's evaluation interval in env steps (rlkit's: below for ``wall``, the same otherwise)."""
RLKIT_WALL_EVAL_EVERY = 1_024
EVAL_EPISODES = 20
TARGET = -200.0
"""The return the ``wall`` part times (Pendulum)."""



# --- one trial, in its own process -----------------------------------------------------------


def trial_rlkit(part: str, algo: str, seed: int, budget: int, threads: int) -> dict[str, Any]:
    """Train rlkit with the experiment file's hyperparameters; return the eval history."""
    import torch

    from rlkit import Plugins, load_experiment

    TimedTrainer = timed_trainer_class()
    plugins = Plugins.load()
    stop = part == "wall"
    every = RLKIT_WALL_EVAL_EVERY if stop else EVAL_EVERY[part]
    with tempfile.TemporaryDirectory(prefix="rlkit-bench-") as run_dir:
        steps = RLKIT_WALL_BUDGET if stop else budget
        overrides = [f"train.seed={seed}", f"train.total_steps={steps}",
                     f"train.torch_threads={threads}", "train.device=cpu",
                     f"eval.target_return={TARGET if stop else 'null'}", f"eval.every={every}",
                     f"eval.episodes={EVAL_EPISODES}", f"run.dir={run_dir}", "run.name=run"]
        experiment = load_experiment(ROOT / "experiments" / EXPERIMENTS[part, algo], plugins,
                                     overrides)
        trainer = TimedTrainer(experiment, plugins, progress=False)
        trainer.history = []
        trainer.started = time.perf_counter()
        summary = trainer.run()
        total_s = time.perf_counter() - trainer.started
    if not trainer.history:
        raise RuntimeError("rlkit's Trainer no longer evaluates through Trainer.evaluate; "
                           "update TimedTrainer in cartpole_vs_sb3.py")
    return {"env_steps": summary["env_steps"], "train_s": total_s - trainer.eval_s,
            "eval_s": trainer.eval_s, "history": trainer.history,
            "threads": torch.get_num_threads(),
            "num_envs": experiment.env.num_envs}


def sb3_model(part: str, algo: str, seed: int) -> Any:
    """SB3's DDPG or TD3 with rl-baselines3-zoo's hyperparameters for the part's env."""
    import numpy as np
    from stable_baselines3 import DDPG, TD3
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.noise import NormalActionNoise

    env = make_vec_env(ENV_IDS[part], n_envs=1, seed=seed)
    n_actions = env.action_space.shape[0]
    noise = NormalActionNoise(np.zeros(n_actions), 0.1 * np.ones(n_actions))
    common: dict[str, Any] = {"learning_rate": 1e-3, "learning_starts": 10_000,
                              "batch_size": 256, "train_freq": 1, "gradient_steps": 1,
                              "action_noise": noise, "seed": seed, "device": "cpu",
                              "verbose": 0, "policy_kwargs": {"net_arch": [400, 300]}}
    if part in ("pendulum", "wall"):
        common.update(gamma=0.98, buffer_size=200_000)
    else:  # the zoo's MuJoCo defaults: SB3's gamma (0.99) and buffer (1M)
        common.update(gamma=0.99, buffer_size=1_000_000)
    cls = TD3 if algo == "td3" else DDPG
    return cls("MlpPolicy", env, **common)


def sb3_timed_eval(part: str, seed: int, budget: int) -> Any:
    """cartpole_vs_sb3's SB3 callback for ``part``: evaluates every EVAL_EVERY[part] env steps
    on its env; the ``wall`` part stops at the first evaluation reaching TARGET."""
    return cartpole_sb3_timed_eval(
        seed, budget, stop_at_target=part == "wall", every=EVAL_EVERY[part], target=TARGET,
        evaluate=lambda model, s: evaluate_sb3(model, s, env_id=ENV_IDS[part]))


def trial_sb3(part: str, algo: str, seed: int, budget: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    model = sb3_model(part, algo, seed)
    callback = sb3_timed_eval(part, seed, budget)
    callback.started = time.perf_counter()
    model.learn(total_timesteps=budget, callback=callback)
    total_s = time.perf_counter() - callback.started
    return {"env_steps": int(model.num_timesteps), "train_s": total_s - callback.eval_s,
            "eval_s": callback.eval_s, "history": callback.history, "threads": threads,
            "num_envs": 1}


def run_trial(framework: str, part: str, algo: str, seed: int, budget: int,
              threads: int) -> None:
    """Child process: run one trial and print its result as one JSON line."""
    trial = trial_rlkit if framework == "rlkit" else trial_sb3
    result = trial(part, algo, seed, budget, threads)
    history = result["history"]
    reached = None if part == "halfcheetah" else next(
        (h for h in history if h["return"] >= TARGET), None)  # -200 is Pendulum's target
    result.update(
        framework=framework, part=part, algo=algo, seed=seed,
        steps_per_s=result["env_steps"] / result["train_s"],
        final_return=history[-1]["return"],
        time_to_target_s=None if reached is None else reached["train_s"],
        steps_to_target=None if reached is None else reached["step"],
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    print("RESULT " + json.dumps(result), flush=True)


# --- the driver ------------------------------------------------------------------------------


def spawn(framework: str, part: str, algo: str, seed: int, budget: int,
          threads: int) -> subprocess.Popen[str]:
    """Start one trial in a fresh interpreter."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--trial", framework, "--part", part,
           "--algos", algo, "--seeds", str(seed), "--budget", str(budget),
           "--threads", str(threads)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def collect(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Wait for a trial; its result line as a dict."""
    stdout, stderr = proc.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"trial {' '.join(map(str, proc.args))} failed "
                           f"(exit {proc.returncode}):\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    return result


def label(r: dict[str, Any]) -> str:
    name = "rlkit" if r["framework"] == "rlkit" else "SB3"
    return f"{name} {r['algo'].upper()} ({r['threads']} thr)"


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def summarize(results: list[dict[str, Any]], algo: str) -> dict[str, Any]:
    """Per-contender means (mean and standard deviation of the final return) and rlkit's
    ratios, each framework at its fastest thread setting."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r["algo"] == algo:
            groups.setdefault(label(r), []).append(r)
    means: dict[str, dict[str, Any]] = {}
    for name, rows in groups.items():
        finals = [r["final_return"] for r in rows]
        means[name] = {
            "framework": rows[0]["framework"], "seeds": len(rows),
            "time_to_target_s": _mean([r["time_to_target_s"] for r in rows]),
            "reached": sum(r["time_to_target_s"] is not None for r in rows),
            "steps_per_s": statistics.fmean(r["steps_per_s"] for r in rows),
            "final_return": statistics.fmean(finals),
            "final_return_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "train_s": statistics.fmean(r["train_s"] for r in rows),
            "peak_rss_mib": statistics.fmean(r["peak_rss_mib"] for r in rows),
        }

    def fastest(framework: str) -> str | None:
        names = [n for n, m in means.items() if m["framework"] == framework]
        return max(names, key=lambda n: means[n]["steps_per_s"]) if names else None

    ours_name, theirs_name = fastest("rlkit"), fastest("sb3")
    ratios: dict[str, Any] = {}
    if ours_name and theirs_name:
        ours, theirs = means[ours_name], means[theirs_name]
        ttt = (theirs["time_to_target_s"] / ours["time_to_target_s"]
               if theirs["time_to_target_s"] and ours["time_to_target_s"] else None)
        ratios = {"rlkit": ours_name, "sb3": theirs_name, "time_to_target": ttt,
                  "steps_per_s": ours["steps_per_s"] / theirs["steps_per_s"],
                  "memory": ours["peak_rss_mib"] / theirs["peak_rss_mib"],
                  "final_return": ours["final_return"] - theirs["final_return"]}
    return {"means": means, "ratios": ratios}


def _fmt(value: float | None, spec: str) -> str:
    return "not reached" if value is None else format(value, spec)


def markdown(results: list[dict[str, Any]], part: str, algos: list[str]) -> str:
    """The tables of RESULTS.md: per-seed rows, means and ratios."""
    out: list[str] = []
    for algo in algos:
        rows = sorted((r for r in results if r["algo"] == algo),
                      key=lambda r: (r["framework"] != "rlkit", label(r), r["seed"]))
        if not rows:
            continue
        out += [f"### {algo.upper()} on {ENV_IDS[part]}", "",
                "| contender | seed | env steps | time to -200 (s) | steps to -200 | "
                "env steps/s | final eval return | training time (s) | peak RSS (MiB) |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            steps = "—" if r["steps_to_target"] is None else f"{r['steps_to_target']:,}"
            out.append(f"| {label(r)} | {r['seed']} | {r['env_steps']:,} | "
                       f"{_fmt(r['time_to_target_s'], '.1f')} | {steps} | "
                       f"{r['steps_per_s']:,.0f} | {r['final_return']:.1f} | "
                       f"{r['train_s']:.1f} | {r['peak_rss_mib']:.0f} |")
        summary = summarize(results, algo)
        for name, m in summary["means"].items():
            reached = (f" ({m['reached']}/{m['seeds']} reached)"
                       if m["reached"] < m["seeds"] else "")
            out.append(f"| **{name} mean** | | | {_fmt(m['time_to_target_s'], '.1f')}{reached} "
                       f"| | {m['steps_per_s']:,.0f} | {m['final_return']:.1f} "
                       f"± {m['final_return_std']:.1f} | {m['train_s']:.1f} | "
                       f"{m['peak_rss_mib']:.0f} |")
        ratio = summary["ratios"]
        if ratio:
            out += ["", f"Ratios, {ratio['rlkit']} against {ratio['sb3']}: env steps/s "
                    f"**{ratio['steps_per_s']:.2f}**; peak RSS **{ratio['memory']:.2f}**; "
                    f"final eval return, rlkit − SB3 **{ratio['final_return']:+.1f}**; "
                    f"SB3 time to -200 / rlkit time to -200 "
                    f"**{_fmt(ratio['time_to_target'], '.2f')}** (means over the seeds that "
                    f"reached it)."]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("pendulum", "wall", "halfcheetah"),
                        default="pendulum")
    parser.add_argument("--algos", choices=("ddpg", "td3"), nargs="+", default=None,
                        help="default: both for pendulum, td3 otherwise")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget", type=int, default=None,
                        help="env steps per trial (default: 20k Pendulum, 100k HalfCheetah)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch threads; several values run every trial at each")
    parser.add_argument("--frameworks", choices=("rlkit", "sb3"), nargs="+",
                        default=["rlkit", "sb3"], help="run only some (no ratios with one)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trials run side by side, in the order of the plan (seed by seed; "
                             "default 1: one after another, alternating)")
    parser.add_argument("--out", type=Path, default=None, help="write raw results as JSON")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the result tables as Markdown (for RESULTS.md)")
    parser.add_argument("--trial", choices=("rlkit", "sb3"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    algos = args.algos or (["ddpg", "td3"] if args.part == "pendulum" else ["td3"])
    budget = args.budget or BUDGET[args.part]
    if args.trial:
        run_trial(args.trial, args.part, algos[0], args.seeds[0], budget, args.threads[0])
        return 0
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores; torch {info['torch']}, gymnasium "
          f"{info['gymnasium']}, stable-baselines3 {info['stable_baselines3']}; {info['date']}; "
          f"load average {info['load_average']}")
    plan: list[tuple[str, str, int, int]] = []
    for i, seed in enumerate(args.seeds):
        trials = [(fw, algo, seed, t) for algo in algos for t in args.threads
                  for fw in args.frameworks]
        if i % 2:  # alternate who goes first, so neither always meets the same load
            trials.reverse()
        plan += trials
    results: list[dict[str, Any]] = []
    for start in range(0, len(plan), args.jobs):
        procs = [spawn(fw, args.part, algo, seed, budget, threads)
                 for fw, algo, seed, threads in plan[start:start + args.jobs]]
        for proc in procs:
            r = collect(proc)
            results.append(r)
            print(f"  {label(r):22s} seed {r['seed']}: {r['steps_per_s']:,.0f} steps/s, final "
                  f"{r['final_return']:.1f}, to -200 {_fmt(r['time_to_target_s'], '.1f')} s, "
                  f"{r['peak_rss_mib']:.0f} MiB", flush=True)
            if args.out:  # keep what is done so far if a later trial fails
                args.out.write_text(json.dumps({"machine": info, "results": results},
                                               indent=1))
    info["load_average_end"] = machine()["load_average"]
    summaries = {algo: summarize(results, algo) for algo in algos}
    text = markdown(results, args.part, algos)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.out:
        args.out.write_text(json.dumps({"machine": info, "command": sys.argv, "part": args.part,
                                        "results": results, "summary": summaries}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
