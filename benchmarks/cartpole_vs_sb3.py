"""rlkit against Stable-Baselines3 on CartPole-v1: PPO and DQN, same hyperparameters, same
evaluation, same run.

Every (framework, algorithm, seed) trial runs in a fresh interpreter, so its peak resident memory
(``ru_maxrss``) is its own; the trials of both frameworks alternate, so both see the same machine
load. Hyperparameters are rl-baselines3-zoo's for CartPole-v1: rlkit reads them from
``experiments/cartpole.yaml`` / ``experiments/cartpole_dqn.yaml`` (only the early stop is turned
off), Stable-Baselines3 gets them as constructor arguments below.

Evaluation (both frameworks): every ``EVAL_EVERY`` env steps, ``EVAL_EPISODES`` deterministic
episodes on 20 separate environments (one episode each), seeded as rlkit seeds them. The clock
stops while evaluating: *training time* is wall time since the start of training minus the time
spent in evaluations; *time to 475* is the training time at the first evaluation whose mean return
reaches 475.

    python benchmarks/cartpole_vs_sb3.py --algo both --seeds 0 1 2 --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = {"ppo": ROOT / "experiments" / "cartpole.yaml",
               "dqn": ROOT / "experiments" / "cartpole_dqn.yaml"}
BUDGET = {"ppo": 100_000, "dqn": 50_000}
"""rl-baselines3-zoo's n_timesteps for CartPole-v1."""
QUICK_BUDGET = {"ppo": 10_000, "dqn": 10_000}
ENV_ID = "CartPole-v1"
EVAL_EVERY = 5_000
EVAL_EPISODES = 20
TARGET = 475.0


# --- the shared evaluation protocol ----------------------------------------------------------


def eval_seed(train_seed: int, index: int) -> int:
    """The seed of the ``index``-th evaluation (rlkit's own formula, used for both)."""
    return train_seed * 7919 + 1_000_003 + index


def evaluate_sb3(model: Any, seed: int, episodes: int = EVAL_EPISODES, *,
                 env_id: str = ENV_ID) -> float:
    """Mean return of ``episodes`` deterministic episodes of ``env_id``, one per environment,
    as rlkit does.

    rlkit evaluates on ``min(episodes, 32)`` same-step-autoreset environments reset with
    ``seed`` and counts the first episode of each; this does the same with ``model.predict``.
    """
    import gymnasium as gym
    import numpy as np
    from gymnasium.vector import AutoresetMode

    n = min(episodes, 32)
    quota = np.array([(episodes + i) // n for i in range(n)])
    env = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    obs, _ = env.reset(seed=seed)
    done_count = np.zeros(n, dtype=np.int64)
    ep_return = np.zeros(n)
    returns: list[float] = []
    while (done_count < quota).any():
        actions, _ = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(actions)
        ep_return += reward
        finished = terminated | truncated
        for i in np.flatnonzero(finished & (done_count < quota)):
            returns.append(float(ep_return[i]))
        done_count += finished
        ep_return[finished] = 0.0
    env.close()
    return float(np.mean(returns))


# --- one trial, in its own process -----------------------------------------------------------


def timed_trainer_class() -> Any:
    """rlkit's Trainer, recording each evaluation's step, return and the training time before
    it (wall time since ``started`` minus the time spent in earlier evaluations)."""
    from rlkit.loop import Trainer

    class TimedTrainer(Trainer):
        history: list[dict[str, float]]
        started = 0.0
        eval_s = 0.0

        def evaluate(self, logger: Any) -> Any:
            start = time.perf_counter()
            result = super().evaluate(logger)
            self.history.append({"step": self.env_steps, "return": result.mean,
                                 "train_s": start - self.started - self.eval_s})
            self.eval_s += time.perf_counter() - start
            return result

    return TimedTrainer


def trial_rlkit(algo: str, seed: int, budget: int) -> dict[str, Any]:
    """Train rlkit with the experiment file's hyperparameters; return the eval history."""
    from rlkit import Plugins, load_experiment

    TimedTrainer = timed_trainer_class()
    plugins = Plugins.load()
    with tempfile.TemporaryDirectory(prefix="rlkit-bench-") as run_dir:
        overrides = [f"train.seed={seed}", f"train.total_steps={budget}",
                     "eval.target_return=null", f"eval.every={EVAL_EVERY}",
                     f"eval.episodes={EVAL_EPISODES}", f"run.dir={run_dir}", "run.name=run"]
        experiment = load_experiment(EXPERIMENTS[algo], plugins, overrides)
        trainer = TimedTrainer(experiment, plugins, progress=False)
        trainer.history = []
        import torch

        threads = torch.get_num_threads()
        trainer.started = time.perf_counter()
        summary = trainer.run()
        total_s = time.perf_counter() - trainer.started
    if not trainer.history:
        raise RuntimeError("rlkit's Trainer no longer evaluates through Trainer.evaluate; "
                           "update TimedTrainer in this benchmark")
    return {"env_steps": summary["env_steps"], "train_s": total_s - trainer.eval_s,
            "eval_s": trainer.eval_s, "history": trainer.history, "threads": threads}


def sb3_timed_eval(seed: int, budget: int, stop_at_target: bool = False, *,
                   every: int = EVAL_EVERY, target: float = TARGET,
                   evaluate: Callable[[Any, int], float] | None = None) -> Any:
    """An SB3 callback: evaluates every ``every`` steps (and at the budget) with the clock
    stopped, recording step, return and training time; stops at the budget, or at the first
    evaluation reaching ``target`` when ``stop_at_target``.

    :param evaluate: ``evaluate(model, eval_seed) -> mean return`` (default: :func:`evaluate_sb3`
        on CartPole-v1); the other benchmarks pass their env's or their recurrent evaluation.
    """
    from stable_baselines3.common.callbacks import BaseCallback

    score = evaluate if evaluate is not None else evaluate_sb3

    class TimedEval(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_eval = every
            self.history: list[dict[str, float]] = []
            self.started = 0.0
            self.eval_s = 0.0

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval or self.num_timesteps >= budget:
                start = time.perf_counter()
                mean = score(self.model, eval_seed(seed, len(self.history)))
                self.history.append({"step": self.num_timesteps, "return": mean,
                                     "train_s": start - self.started - self.eval_s})
                self.eval_s += time.perf_counter() - start
                self.next_eval = (self.num_timesteps // every + 1) * every
                if stop_at_target and mean >= target:
                    return False
            return self.num_timesteps < budget

    return TimedEval()


def sb3_zoo_model(algo: str, seed: int) -> Any:
    """Stable-Baselines3's PPO or DQN with rl-baselines3-zoo's CartPole-v1 hyperparameters."""
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env

    def linear(start: float) -> Any:
        return lambda progress_remaining: progress_remaining * start  # zoo's lin_<start>

    if algo == "ppo":
        env = make_vec_env(ENV_ID, n_envs=8, seed=seed)
        return PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8,
                   gamma=0.98, n_epochs=20, ent_coef=0.0, learning_rate=linear(1e-3),
                   clip_range=linear(0.2), seed=seed, device="cpu", verbose=0)
    env = make_vec_env(ENV_ID, n_envs=1, seed=seed)
    return DQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
               learning_starts=1000, gamma=0.99, target_update_interval=10,
               train_freq=256, gradient_steps=128, exploration_fraction=0.16,
               exploration_final_eps=0.04, policy_kwargs={"net_arch": [256, 256]},
               seed=seed, device="cpu", verbose=0)


def trial_sb3(algo: str, seed: int, budget: int, threads: int) -> dict[str, Any]:
    """Train Stable-Baselines3 with rl-baselines3-zoo's CartPole-v1 hyperparameters."""
    import torch

    torch.set_num_threads(threads)
    model = sb3_zoo_model(algo, seed)
    callback = sb3_timed_eval(seed, budget)
    callback.started = time.perf_counter()
    model.learn(total_timesteps=budget, callback=callback)
    total_s = time.perf_counter() - callback.started
    return {"env_steps": int(model.num_timesteps), "train_s": total_s - callback.eval_s,
            "eval_s": callback.eval_s, "history": callback.history, "threads": threads}


def run_trial(framework: str, algo: str, seed: int, budget: int, threads: int) -> None:
    """Child process: run one trial and print its result as one JSON line."""
    if framework == "rlkit":
        result = trial_rlkit(algo, seed, budget)
    else:
        result = trial_sb3(algo, seed, budget, threads)
    history = result["history"]
    reached = next((h for h in history if h["return"] >= TARGET), None)
    result.update(
        framework=framework, algo=algo, seed=seed,
        steps_per_s=result["env_steps"] / result["train_s"],
        final_return=history[-1]["return"],
        time_to_target_s=None if reached is None else reached["train_s"],
        steps_to_target=None if reached is None else reached["step"],
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    print("RESULT " + json.dumps(result), flush=True)


# --- the driver ------------------------------------------------------------------------------


def spawn(framework: str, algo: str, seed: int, budget: int, threads: int) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--trial", framework, "--algo", algo,
           "--seeds", str(seed), "--budget", str(budget), "--sb3-threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"trial {framework} {algo} seed {seed} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": version("torch"), "gymnasium": version("gymnasium"),
            "stable_baselines3": version("stable-baselines3"), "rlkit": version("rlkit"),
            "platform": platform.platform(),
            "date": datetime.now().astimezone().strftime("%a %d %b %Y %H:%M:%S %Z"),
            "load_average": os.getloadavg()}


def label(r: dict[str, Any]) -> str:
    return "rlkit" if r["framework"] == "rlkit" else f"SB3 ({r['threads']} thr)"


def _mean(values: list[float | None]) -> float | None:
    """Mean of the values present (seeds that never reached the target are left out)."""
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def summarize(results: list[dict[str, Any]], algo: str) -> dict[str, Any]:
    """Per-framework means, and rlkit's ratios to the fastest SB3 setting."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r["algo"] == algo:
            groups.setdefault(label(r), []).append(r)
    means = {
        name: {
            "time_to_target_s": _mean([r["time_to_target_s"] for r in rows]),
            "reached": sum(r["time_to_target_s"] is not None for r in rows),
            "steps_per_s": statistics.fmean(r["steps_per_s"] for r in rows),
            "final_return": statistics.fmean(r["final_return"] for r in rows),
            "train_s": statistics.fmean(r["train_s"] for r in rows),
            "peak_rss_mib": statistics.fmean(r["peak_rss_mib"] for r in rows),
            "seeds": len(rows),
        }
        for name, rows in groups.items()
    }
    sb3 = [name for name in means if name != "rlkit"]
    ratios: dict[str, Any] = {}
    if "rlkit" in means and sb3:
        best = max(sb3, key=lambda name: means[name]["steps_per_s"])
        ours, theirs = means["rlkit"], means[best]
        ratios = {
            "against": best,
            "time_to_target": (theirs["time_to_target_s"] / ours["time_to_target_s"]
                               if theirs["time_to_target_s"] and ours["time_to_target_s"]
                               else None),
            "steps_per_s": ours["steps_per_s"] / theirs["steps_per_s"],
            "memory": ours["peak_rss_mib"] / theirs["peak_rss_mib"],
            "final_return": ours["final_return"] - theirs["final_return"],
        }
    return {"means": means, "ratios": ratios}


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "not reached" if value is None else format(value, spec) + suffix


def markdown(results: list[dict[str, Any]], algos: list[str]) -> str:
    """The tables of RESULTS.md: per-seed rows, means and ratios."""
    out = []
    for algo in algos:
        rows = sorted((r for r in results if r["algo"] == algo),
                      key=lambda r: (label(r) != "rlkit", label(r), r["seed"]))
        if not rows:
            continue
        out += [f"### {algo.upper()} ({rows[0]['env_steps']:,} env steps)", "",
                "| framework | seed | time to 475 (s) | steps to 475 | env steps/s | "
                "final eval return | training time (s) | peak RSS (MiB) |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            steps = "—" if r["steps_to_target"] is None else f"{r['steps_to_target']:,}"
            out.append(f"| {label(r)} | {r['seed']} | {_fmt(r['time_to_target_s'], '.1f')} | "
                       f"{steps} | {r['steps_per_s']:,.0f} | {r['final_return']:.1f} | "
                       f"{r['train_s']:.1f} | {r['peak_rss_mib']:.0f} |")
        summary = summarize(results, algo)
        for name, m in summary["means"].items():
            reached = (f" ({m['reached']}/{m['seeds']} seeds reached)"
                       if m["reached"] < m["seeds"] else "")
            out.append(f"| **{name} mean** | | {_fmt(m['time_to_target_s'], '.1f')}{reached} | | "
                       f"{m['steps_per_s']:,.0f} | {m['final_return']:.1f} | "
                       f"{m['train_s']:.1f} | {m['peak_rss_mib']:.0f} |")
        ratio = summary["ratios"]
        if ratio:
            ttt = ratio["time_to_target"]
            out += ["", f"Ratios against {ratio['against']}: SB3 time to 475 / rlkit time to 475 "
                    f"= **{_fmt(ttt, '.2f')}** (means over the seeds that reached 475); rlkit env "
                    f"steps/s / SB3 env steps/s = "
                    f"**{ratio['steps_per_s']:.2f}**; rlkit peak RSS / SB3 peak RSS = "
                    f"**{ratio['memory']:.2f}**; final eval return, rlkit − SB3 = "
                    f"**{ratio['final_return']:+.1f}**."]
        out.append("")
    return "\n".join(out)


def print_tables(results: list[dict[str, Any]], algos: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    for algo in algos:
        rows = sorted((r for r in results if r["algo"] == algo),
                      key=lambda r: (label(r) != "rlkit", label(r), r["seed"]))
        if not rows:
            continue
        table = Table(title=f"{algo.upper()} on {ENV_ID}, {rows[0]['env_steps']:,} env steps")
        for col in ("framework", "seed", "time to 475 (s)", "steps to 475", "env steps/s",
                    "final eval", "train (s)", "peak RSS (MiB)"):
            table.add_column(col, justify="left" if col == "framework" else "right")
        for r in rows:
            table.add_row(label(r), str(r["seed"]), _fmt(r["time_to_target_s"], ".1f"),
                          "—" if r["steps_to_target"] is None else f"{r['steps_to_target']:,}",
                          f"{r['steps_per_s']:,.0f}", f"{r['final_return']:.1f}",
                          f"{r['train_s']:.1f}", f"{r['peak_rss_mib']:.0f}")
        summary = summarize(results, algo)
        table.add_section()
        for name, m in summary["means"].items():
            reached = f" ({m['reached']}/{m['seeds']})" if m["reached"] < m["seeds"] else ""
            table.add_row(f"[bold]{name} mean", "",
                          _fmt(m["time_to_target_s"], ".1f") + reached, "",
                          f"{m['steps_per_s']:,.0f}", f"{m['final_return']:.1f}",
                          f"{m['train_s']:.1f}", f"{m['peak_rss_mib']:.0f}")
        console.print(table)
        ratio = summary["ratios"]
        if ratio:
            console.print(f"  against {ratio['against']}: time to 475 SB3/rlkit = "
                          f"[bold]{_fmt(ratio['time_to_target'], '.2f', 'x')}[/], env steps/s "
                          f"rlkit/SB3 = [bold]{ratio['steps_per_s']:.2f}[/]x, peak RSS rlkit/SB3 = "
                          f"[bold]{ratio['memory']:.2f}[/], final eval rlkit − SB3 = "
                          f"[bold]{ratio['final_return']:+.1f}[/]\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=("ppo", "dqn", "both"), default="both")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=None,
                        help="env steps per trial (default: the zoo's, 100k PPO / 50k DQN)")
    parser.add_argument("--sb3-threads", type=int, nargs="+", default=[1],
                        help="torch threads for SB3; several values run one SB3 trial each and "
                             "rlkit is compared with the fastest (rlkit uses its default)")
    parser.add_argument("--frameworks", choices=("rlkit", "sb3"), nargs="+",
                        default=["rlkit", "sb3"], help="run only some (no ratios with one)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke-sized run: 10k steps, seed 0")
    parser.add_argument("--out", type=Path, default=None, help="write raw results as JSON")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the result tables as Markdown (for RESULTS.md)")
    parser.add_argument("--trial", choices=("rlkit", "sb3"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    algos = ["ppo", "dqn"] if args.algo == "both" else [args.algo]
    if args.trial:
        run_trial(args.trial, algos[0], args.seeds[0], args.budget, args.sb3_threads[0])
        return 0
    seeds = [0] if args.quick else args.seeds
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores; torch {info['torch']}, gymnasium "
          f"{info['gymnasium']}, stable-baselines3 {info['stable_baselines3']}; {info['date']}")
    results: list[dict[str, Any]] = []
    for i, seed in enumerate(seeds):
        for algo in algos:
            budget = args.budget or (QUICK_BUDGET if args.quick else BUDGET)[algo]
            trials = [("rlkit", 1)] if "rlkit" in args.frameworks else []
            if "sb3" in args.frameworks:
                trials += [("sb3", t) for t in args.sb3_threads]
            if i % 2:  # alternate who goes first, so neither always meets the same load
                trials.reverse()
            for framework, threads in trials:
                r = spawn(framework, algo, seed, budget, threads)
                results.append(r)
                print(f"  {algo} {label(r):12s} seed {seed}: "
                      f"{_fmt(r['time_to_target_s'], '.1f')} s to 475, "
                      f"{r['steps_per_s']:,.0f} steps/s, final {r['final_return']:.1f}, "
                      f"{r['peak_rss_mib']:.0f} MiB", flush=True)
                if args.out:  # keep what is done so far if a later trial fails
                    args.out.write_text(json.dumps({"machine": info, "results": results},
                                                   indent=1))
    print()
    print_tables(results, algos)
    if args.markdown:
        args.markdown.write_text(markdown(results, algos))
    if args.out:
        summaries = {algo: summarize(results, algo) for algo in algos}
        args.out.write_text(json.dumps({"machine": info, "command": sys.argv,
                                        "results": results, "summary": summaries}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
