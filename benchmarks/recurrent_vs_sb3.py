"""Recurrent PPO on CartPole with the velocities hidden: rlkit against sb3-contrib's
RecurrentPPO, in the same run.

The task is CartPole-v1 observing only the cart's position and the pole's angle (gymnasium's
CartPole-v1 through ``rlkit_envs.wrappers.SelectObservation(indices=[0, 2])``, or rlkit's
torch-native ``rlkit/CartPoleNoVel-v1``, the same dynamics): one frame does not tell which way
the pole moves, so a policy needs memory. Five contenders, each trial in a fresh interpreter
(its peak resident memory, ``ru_maxrss``, is its own), the contenders alternating seed by seed
so that all meet the same machine load:

* ``rlkit-native`` -- ``experiments/cartpole_novel_lstm.yaml``: PPO + LSTM on 1,024
  torch-native envs, the whole loop on the training device;
* ``rlkit-gym`` -- ``experiments/cartpole_novel_gymnasium_lstm.yaml``: PPO + LSTM on 8
  gymnasium envs;
* ``rlkit-gym-zoo`` -- the same gymnasium envs with RecurrentPPO's own hyperparameters
  (rl-baselines3-zoo's ``ppo_lstm`` entry for CartPoleNoVel-v1, ``ZOO`` below) and an LSTM of
  RecurrentPPO's size (256 units, no encoder, one core for the policy and one for the value);
* ``rlkit-gym-zoo-net`` -- rlkit-gym-zoo with RecurrentPPO's network and optimizer as well:
  64-64 tanh layers after each LSTM (``algorithm.head_sizes``) and Adam's epsilon 1e-5;
* ``sb3`` -- sb3-contrib's ``RecurrentPPO("MlpLstmPolicy")`` with those zoo hyperparameters on
  8 such gymnasium envs (one torch thread, its fastest setting on small networks);
* ``rlkit-mlp`` -- the control: ``cartpole_novel_lstm.yaml`` with an MLP instead of the LSTM
  (one frame, no memory), same budget.

Every trial stops at the first evaluation whose mean return reaches 475 (or at its budget).
Evaluation: 20 deterministic episodes, one per separate env, seeded by rlkit's formula, with a
fresh recurrent state; rlkit evaluates on its experiment file's schedule (``eval.every``),
RecurrentPPO every 5,000 env steps. The clock stops while evaluating: *time to 475* is the
training time (wall time since training started, minus evaluations) at that evaluation.

    python benchmarks/recurrent_vs_sb3.py --seeds 0 1 2 3 4 --out benchmarks/recurrent_vs_sb3.json
    python benchmarks/recurrent_vs_sb3.py --quick        # smoke-sized: one seed, small budgets
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cartpole_vs_sb3 import machine, sb3_timed_eval, timed_trainer_class

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "experiments" / "cartpole_novel_lstm.yaml"
GYMNASIUM = ROOT / "experiments" / "cartpole_novel_gymnasium_lstm.yaml"
TARGET = 475.0
EVAL_EVERY = 5_000
EVAL_EPISODES = 20
ENV_ID = "CartPole-v1"
KEEP = [0, 2]
"""Cart position and pole angle: the velocities (1, 3) are hidden."""
SB3_BUDGET = 100_000
"""rl-baselines3-zoo's n_timesteps for CartPoleNoVel-v1 (RecurrentPPO and rlkit-gym-zoo)."""

ZOO = {"n_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
       "n_epochs": 20, "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2}
"""rl-baselines3-zoo's ``ppo_lstm`` hyperparameters for CartPoleNoVel-v1 (``MlpLstmPolicy``;
the learning rate and clip range decay linearly to 0)."""

RLKIT_ZOO = [
    f"env.num_envs={ZOO['n_envs']}", f"algorithm.n_steps={ZOO['n_steps']}",
    "algorithm.seq_len=null", f"algorithm.batch_size={ZOO['batch_size']}",
    f"algorithm.gae_lambda={ZOO['gae_lambda']}", f"algorithm.gamma={ZOO['gamma']}",
    f"algorithm.n_epochs={ZOO['n_epochs']}", f"algorithm.ent_coef={ZOO['ent_coef']}",
    f"algorithm.optimizer={{name: adam, lr: {{kind: linear, start: {ZOO['learning_rate']}, "
    f"end: 0.0}}}}",
    f"algorithm.clip_coef={{kind: linear, start: {ZOO['clip_range']}, end: 0.0}}",
    "algorithm.max_grad_norm=0.5", "algorithm.vf_coef=0.5",
    "backbone={name: lstm, hidden_size: 256, layers: 1, encoder: {name: mlp, hidden_sizes: []}}",
    f"train.total_steps={SB3_BUDGET}", f"eval.every={EVAL_EVERY}",
]
"""RecurrentPPO's settings written as rlkit overrides of the gymnasium experiment. SB3's
``MlpLstmPolicy`` runs a 256-unit LSTM straight on the observation (rlkit: an encoder with no
hidden layer), separate LSTMs for policy and value (rlkit's default, ``share_backbone:
false``); it adds 64-64 tanh layers after each LSTM, where rlkit's heads are linear."""

ZOO_NETWORK = [
    "algorithm.head_sizes=[64, 64]",
    f"algorithm.optimizer={{name: adam, eps: 1.0e-5, lr: {{kind: linear, start: "
    f"{ZOO['learning_rate']}, end: 0.0}}}}",
]
"""What else makes rlkit-gym-zoo's network and optimizer RecurrentPPO's: 64-64 tanh layers
after each LSTM, before the policy and value heads (``MlpLstmPolicy``'s ``net_arch``), with
SB3's initialisation gains (sqrt(2) for those layers, 0.01 policy, 1 value), and Adam's epsilon
1e-5 (SB3's PPO default; rlkit's is 1e-8)."""

VARIANTS: dict[str, tuple[Path, list[str]]] = {
    "rlkit-native": (NATIVE, []),
    "rlkit-gym": (GYMNASIUM, []),
    "rlkit-gym-zoo": (GYMNASIUM, RLKIT_ZOO),
    "rlkit-gym-zoo-net": (GYMNASIUM, RLKIT_ZOO + ZOO_NETWORK),
    "rlkit-mlp": (NATIVE, ["backbone={name: mlp, hidden_sizes: [64, 64]}",
                           "algorithm.seq_len=null"]),
}
ORDER = ["rlkit-native", "sb3", "rlkit-gym", "rlkit-gym-zoo", "rlkit-gym-zoo-net", "rlkit-mlp"]
QUICK_BUDGET = 20_000


# --- rlkit -----------------------------------------------------------------------------------


def trial_rlkit(variant: str, seed: int, device: str, budget: int | None) -> dict[str, Any]:
    """Train an rlkit variant to 475 (or its budget); return the evaluation history."""
    path, overrides = VARIANTS[variant]
    sets = [*overrides] + ([] if budget is None else [f"train.total_steps={budget}"])
    return trial_rlkit_file(path, sets, seed, device)


def trial_rlkit_file(path: Path, overrides: list[str], seed: int,
                     device: str) -> dict[str, Any]:
    """Train the experiment file ``path`` with ``overrides``, evaluations timed apart."""
    import torch

    from rlkit import Plugins, load_experiment

    TimedTrainer = timed_trainer_class()
    plugins = Plugins.load()
    with tempfile.TemporaryDirectory(prefix="rlkit-bench-") as run_dir:
        sets = [*overrides, f"train.seed={seed}", f"train.device={device}",
                f"eval.episodes={EVAL_EPISODES}", f"run.dir={run_dir}", "run.name=run"]
        experiment = load_experiment(path, plugins, sets)
        trainer = TimedTrainer(experiment, plugins, progress=False)
        trainer.history = []
        trainer.started = time.perf_counter()
        summary = trainer.run()
        total_s = time.perf_counter() - trainer.started
    return {"env_steps": summary["env_steps"], "train_s": total_s - trainer.eval_s,
            "eval_s": trainer.eval_s, "history": trainer.history,
            "threads": torch.get_num_threads(), "device": device,
            "budget": experiment.train.total_steps}


# --- sb3-contrib's RecurrentPPO --------------------------------------------------------------


def make_sb3_env(n: int, seed: int | None = None, **vector_kwargs: Any) -> Any:
    import gymnasium as gym
    from rlkit_envs.wrappers import SelectObservation

    def wrap(env: Any) -> Any:
        return SelectObservation(env, indices=KEEP)

    if seed is None:  # evaluation envs: gymnasium's own vector env, rlkit's protocol
        return gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="sync", wrappers=[wrap],
                            **vector_kwargs)
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env(ENV_ID, n_envs=n, seed=seed, wrapper_class=SelectObservation,
                        wrapper_kwargs={"indices": KEEP})


def evaluate_recurrent_sb3(model: Any, seed: int, episodes: int = EVAL_EPISODES,
                           make_env: Any = None) -> float:
    """Mean return of ``episodes`` deterministic episodes, one per env, as rlkit evaluates:
    ``min(episodes, 32)`` same-step-autoreset envs reset with ``seed``, a fresh LSTM state,
    restarted wherever an episode ends. ``make_env(n)`` builds them (default: CartPole with
    the velocities hidden)."""
    import numpy as np
    from gymnasium.vector import AutoresetMode

    n = min(episodes, 32)
    quota = np.array([(episodes + i) // n for i in range(n)])
    env = (make_env(n) if make_env is not None
           else make_sb3_env(n, vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}))
    obs, _ = env.reset(seed=seed)
    state = None
    starts = np.ones(n, dtype=bool)
    done_count = np.zeros(n, dtype=np.int64)
    ep_return = np.zeros(n)
    returns: list[float] = []
    while (done_count < quota).any():
        actions, state = model.predict(obs, state=state, episode_start=starts,
                                       deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(actions)
        ep_return += reward
        starts = terminated | truncated
        for i in np.flatnonzero(starts & (done_count < quota)):
            returns.append(float(ep_return[i]))
        done_count += starts
        ep_return[starts] = 0.0
    env.close()
    return float(np.mean(returns))


def trial_sb3(seed: int, budget: int) -> dict[str, Any]:
    """RecurrentPPO with the zoo's CartPoleNoVel-v1 hyperparameters, to 475 or the budget."""
    import torch
    from sb3_contrib import RecurrentPPO

    torch.set_num_threads(1)

    def linear(start: float) -> Any:
        return lambda progress_remaining: progress_remaining * start  # zoo's lin_<start>

    env = make_sb3_env(ZOO["n_envs"], seed=seed)
    model = RecurrentPPO("MlpLstmPolicy", env, n_steps=ZOO["n_steps"],
                         batch_size=ZOO["batch_size"], gae_lambda=ZOO["gae_lambda"],
                         gamma=ZOO["gamma"], n_epochs=ZOO["n_epochs"], ent_coef=ZOO["ent_coef"],
                         learning_rate=linear(ZOO["learning_rate"]),
                         clip_range=linear(ZOO["clip_range"]), seed=seed, device="cpu",
                         verbose=0)
    callback = sb3_timed_eval(seed, budget, stop_at_target=True, every=EVAL_EVERY,
                              target=TARGET, evaluate=evaluate_recurrent_sb3)
    callback.started = time.perf_counter()
    model.learn(total_timesteps=budget, callback=callback)
    total_s = time.perf_counter() - callback.started
    return {"env_steps": int(model.num_timesteps), "train_s": total_s - callback.eval_s,
            "eval_s": callback.eval_s, "history": callback.history, "threads": 1,
            "device": "cpu", "budget": budget}


# --- one trial per process, and the driver ---------------------------------------------------


def run_trial(variant: str, seed: int, device: str, budget: int | None) -> None:
    """Child process: run one trial and print its result as one JSON line."""
    if variant == "sb3":
        result = trial_sb3(seed, budget or SB3_BUDGET)
    else:
        result = trial_rlkit(variant, seed, device, budget)
    history = result["history"]
    reached = next((h for h in history if h["return"] >= TARGET), None)
    result.update(
        variant=variant, seed=seed,
        steps_per_s=result["env_steps"] / result["train_s"],
        final_return=history[-1]["return"] if history else None,
        time_to_target_s=None if reached is None else reached["train_s"],
        steps_to_target=None if reached is None else reached["step"],
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    print("RESULT " + json.dumps(result), flush=True)


def spawn(variant: str, seed: int, device: str, budget: int | None) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--trial", variant, "--seeds",
           str(seed), "--device", device]
    if budget is not None:
        cmd += ["--budget", str(budget)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"trial {variant} seed {seed} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _mean(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-variant means, RecurrentPPO's time to 475 over each rlkit variant's, and the
    targets."""
    means: dict[str, dict[str, Any]] = {}
    for variant in ORDER:
        rows = [r for r in results if r["variant"] == variant]
        if not rows:
            continue
        means[variant] = {
            "seeds": len(rows),
            "reached": sum(r["time_to_target_s"] is not None for r in rows),
            "time_to_target_s": _mean([r["time_to_target_s"] for r in rows]),
            "steps_to_target": _mean([r["steps_to_target"] for r in rows]),
            "final_return": _mean([r["final_return"] for r in rows]),
            "train_s": statistics.fmean(r["train_s"] for r in rows),
            "steps_per_s": statistics.fmean(r["steps_per_s"] for r in rows),
            "peak_rss_mib": statistics.fmean(r["peak_rss_mib"] for r in rows),
        }
    # A RecurrentPPO seed that never reached 475 counts with its whole training time, so the
    # ratio is then a lower bound (its time to 475 is longer than that).
    sb3_rows = [r for r in results if r["variant"] == "sb3"]
    sb3 = (statistics.fmean(r["time_to_target_s"] or r["train_s"] for r in sb3_rows)
           if sb3_rows else None)
    lower_bound = any(r["time_to_target_s"] is None for r in sb3_rows)
    ratios: dict[str, float | None] = {}
    for variant, m in means.items():
        if variant in ("sb3", "rlkit-mlp"):
            continue
        ours = m["time_to_target_s"]
        ratios[variant] = sb3 / ours if sb3 and ours else None
    every = all(m["reached"] == m["seeds"] for v, m in means.items()
                if v.startswith("rlkit") and v != "rlkit-mlp")
    targets = {
        "every_rlkit_seed_reaches_475": every,
        "native_5x": (ratios.get("rlkit-native") or 0) >= 5,
        "gym_zoo_1_5x": (ratios.get("rlkit-gym-zoo") or 0) >= 1.5,
    }
    return {"means": means, "ratios_sb3_over_rlkit": ratios, "ratios_are_lower_bounds":
            lower_bound, "targets": targets}


def _fmt(value: float | None, spec: str) -> str:
    return "not reached" if value is None else format(value, spec)


def markdown(results: list[dict[str, Any]]) -> str:
    """The per-seed table, the means and the ratios (for RESULTS.md)."""
    head = ("| contender | seed | time to 475 (s) | steps to 475 | final eval | env steps | "
            "training time (s) | env steps/s | peak RSS (MiB) |")
    out = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for variant in ORDER:
        for r in sorted((r for r in results if r["variant"] == variant),
                        key=lambda r: r["seed"]):
            steps = "—" if r["steps_to_target"] is None else f"{r['steps_to_target']:,}"
            out.append(f"| {variant} | {r['seed']} | {_fmt(r['time_to_target_s'], '.1f')} | "
                       f"{steps} | {r['final_return']:.1f} | {r['env_steps']:,} | "
                       f"{r['train_s']:.1f} | {r['steps_per_s']:,.0f} | "
                       f"{r['peak_rss_mib']:.0f} |")
    summary = summarize(results)
    for variant, m in summary["means"].items():
        reached = f" ({m['reached']}/{m['seeds']} reached)" if m["reached"] < m["seeds"] else ""
        steps = "—" if m["steps_to_target"] is None else f"{m['steps_to_target']:,.0f}"
        out.append(f"| **{variant} mean** | | {_fmt(m['time_to_target_s'], '.1f')}{reached} | "
                   f"{steps} | {m['final_return']:.1f} | | {m['train_s']:.1f} | "
                   f"{m['steps_per_s']:,.0f} | {m['peak_rss_mib']:.0f} |")
    ratios = ", ".join(f"{v} **{_fmt(x, '.2f')}×**"
                       for v, x in summary["ratios_sb3_over_rlkit"].items())
    bound = (" (a RecurrentPPO seed that did not reach 475 counts with its whole training "
             "time: lower bounds)" if summary["ratios_are_lower_bounds"] else "")
    out += ["", f"RecurrentPPO time to 475 / rlkit time to 475 (means over the seeds that "
            f"reached 475){bound}: {ratios}."]
    return "\n".join(out) + "\n"


def merge(paths: list[Path], out: Path | None, markdown_path: Path | None) -> int:
    """One result set from several runs of this script (e.g. two seed ranges at once)."""
    runs = [json.loads(p.read_text()) for p in paths]
    results: list[dict[str, Any]] = []
    for r in (r for run in runs for r in run["results"]):  # a (variant, seed) counts once
        if not any((o["variant"], o["seed"]) == (r["variant"], r["seed"]) for o in results):
            results.append(r)
    summary = summarize(results)
    print(markdown(results))
    print("targets:", json.dumps(summary["targets"]))
    if markdown_path:
        markdown_path.write_text(markdown(results))
    if out:
        out.write_text(json.dumps({"machine": runs[0]["machine"],
                                   "runs": [{"machine": run["machine"],
                                             "command": run.get("command")} for run in runs],
                                   "results": results, "summary": summary}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", choices=ORDER, default=ORDER)
    parser.add_argument("--device", default="cpu", help="rlkit's device (cpu, cuda)")
    parser.add_argument("--budget", type=int, default=None,
                        help="env steps per trial (default: each experiment file's, and the "
                             "zoo's 100k for RecurrentPPO and rlkit-gym-zoo)")
    parser.add_argument("--quick", action="store_true", help="one seed, 20k-step budgets")
    parser.add_argument("--out", type=Path, default=None, help="write raw results as JSON")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="write the tables as Markdown (for RESULTS.md)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="combine the JSON files of runs over different seeds (run side by "
                             "side) into --out and --markdown instead of training")
    parser.add_argument("--trial", choices=ORDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trial:
        run_trial(args.trial, args.seeds[0], args.device, args.budget)
        return 0
    if args.merge:
        return merge(args.merge, args.out, args.markdown)
    seeds = [0] if args.quick else args.seeds
    budget = QUICK_BUDGET if args.quick else args.budget
    info = machine()
    info["device"] = args.device
    print(f"{info['cpu']}, {info['cores']} cores; torch {info['torch']}; {info['date']}; "
          f"load average {info['load_average']}")
    results: list[dict[str, Any]] = []
    loads: list[tuple[float, float, float]] = []
    for i, seed in enumerate(seeds):
        order = [v for v in ORDER if v in args.variants]
        if i % 2:  # alternate who goes first, so that none always meets the same load
            order.reverse()
        for variant in order:
            loads.append(os.getloadavg())
            r = spawn(variant, seed, args.device, budget)
            results.append(r)
            print(f"  {variant:14s} seed {seed}: {_fmt(r['time_to_target_s'], '.1f')} s and "
                  f"{r['steps_to_target'] or '—'} steps to 475, final {r['final_return']:.1f}, "
                  f"{r['env_steps']:,} steps in {r['train_s']:.1f} s, "
                  f"{r['peak_rss_mib']:.0f} MiB", flush=True)
            if args.out:  # keep what is done if a later trial fails
                args.out.write_text(json.dumps({"machine": info, "results": results},
                                               indent=1))
    summary = summarize(results)
    print()
    print(markdown(results))
    print("targets:", json.dumps(summary["targets"]))
    if args.markdown:
        args.markdown.write_text(markdown(results))
    if args.out:
        info["load_average_per_trial"] = loads
        args.out.write_text(json.dumps({"machine": info, "command": sys.argv,
                                        "results": results, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
