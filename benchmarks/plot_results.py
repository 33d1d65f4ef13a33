"""Draw the benchmark results as PNGs (from the JSON files the benchmarks write).

    python benchmarks/plot_results.py                      # every JSON found in benchmarks/
    python benchmarks/plot_results.py --out benchmarks/plots

* ``cartpole_vs_sb3.png`` -- evaluation return against training time, one line per seed, rlkit
  and Stable-Baselines3 side by side for PPO and DQN (``cartpole_vs_sb3.json``);
* ``env_throughput.png`` -- env steps per second against the number of envs, every variant
  (``env_throughput.json``);
* ``recurrent_vs_sb3.png`` -- CartPole with the velocities hidden: evaluation return against
  training time (log scale), one line per seed and contender, rlkit's recurrent PPO variants,
  the single-frame MLP control and sb3-contrib's RecurrentPPO (``recurrent_vs_sb3.json``);
* ``minigrid_vs_sb3.png`` -- MiniGrid-DoorKey-5x5: evaluation return against env steps and
  against training time, rlkit and RecurrentPPO (``minigrid_vs_sb3.json``);
* ``ddpg_vs_sb3_pendulum.png``, ``ddpg_vs_sb3_wall.png``, ``ddpg_vs_sb3_halfcheetah.png`` --
  DDPG/TD3: evaluation return against training time, one line per seed, rlkit and
  Stable-Baselines3 (``ddpg_vs_sb3_*.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

HERE = Path(__file__).resolve().parent
COLORS = {"rlkit": "tab:orange", "sb3": "tab:blue"}


def plot_cartpole_vs_sb3(data: dict[str, Any], path: Path) -> None:
    algos = [a for a in ("ppo", "dqn") if any(r["algo"] == a for r in data["results"])]
    fig = Figure(figsize=(6.0 * len(algos), 4.2), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(algos), squeeze=False)[0]
    for ax, algo in zip(axes, algos, strict=True):
        labelled: set[str] = set()
        for trial in data["results"]:
            if trial["algo"] != algo or not trial["history"]:
                continue
            name = trial["framework"]
            times = [h["train_s"] for h in trial["history"]]
            returns = [h["return"] for h in trial["history"]]
            label = None if name in labelled else ("rlkit" if name == "rlkit" else "SB3")
            labelled.add(name)
            ax.plot(times, returns, color=COLORS.get(name, "gray"), alpha=0.75, linewidth=1.3,
                    marker="o", markersize=2.5, label=label)
        ax.axhline(475, color="gray", linestyle="--", linewidth=1, label="475")
        ax.set_title(f"{algo.upper()} on CartPole-v1 (one line per seed)", fontsize=10)
        ax.set_xlabel("training time (s, evaluations excluded)")
        ax.set_ylabel("evaluation return (20 episodes)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"rlkit vs Stable-Baselines3, zoo hyperparameters — {_machine(data)}",
                 fontsize=10)
    fig.savefig(path)


def plot_env_throughput(data: dict[str, Any], path: Path) -> None:
    fig = Figure(figsize=(7.0, 4.2), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    variants = sorted({v for r in data["results"] for v in r["steps_per_s"]})
    for variant in variants:
        points = [(r["num_envs"], r["steps_per_s"][variant]) for r in data["results"]
                  if variant in r["steps_per_s"]]
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", markersize=3, label=variant)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("number of envs (N)")
    ax.set_ylabel("env steps per second (random actions)")
    ax.set_title(f"CartPole-v1 throughput — {_machine(data)}", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path)


RECURRENT_COLORS = {"rlkit-native": "tab:orange", "rlkit-gym": "tab:red",
                    "rlkit-gym-zoo": "tab:purple", "rlkit-mlp": "tab:gray", "sb3": "tab:blue"}
RECURRENT_LABELS = {"rlkit-native": "rlkit LSTM, 1,024 torch-native envs",
                    "rlkit-gym": "rlkit LSTM, 8 gymnasium envs",
                    "rlkit-gym-zoo": "rlkit LSTM, gymnasium, RecurrentPPO's hyperparameters",
                    "rlkit-mlp": "rlkit MLP, one frame (control)",
                    "sb3": "sb3-contrib RecurrentPPO (zoo)"}


def plot_recurrent_vs_sb3(data: dict[str, Any], path: Path) -> None:
    fig = Figure(figsize=(8.0, 4.8), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    labelled: set[str] = set()
    for trial in data["results"]:
        name = trial["variant"]
        if not trial["history"]:
            continue
        times = [max(h["train_s"], 1e-2) for h in trial["history"]]
        returns = [h["return"] for h in trial["history"]]
        label = None if name in labelled else RECURRENT_LABELS.get(name, name)
        labelled.add(name)
        ax.plot(times, returns, color=RECURRENT_COLORS.get(name, "black"), alpha=0.75,
                linewidth=1.2, marker="o", markersize=2, label=label)
    ax.axhline(475, color="gray", linestyle="--", linewidth=1, label="475")
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, evaluations excluded; log scale)")
    ax.set_ylabel("evaluation return (20 episodes)")
    ax.set_title("CartPole with velocities hidden, one line per seed", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"rlkit recurrent PPO vs sb3-contrib RecurrentPPO — {_machine(data)}",
                 fontsize=9)
    fig.savefig(path)


def plot_minigrid_vs_sb3(data: dict[str, Any], path: Path) -> None:
    fig = Figure(figsize=(11.0, 4.2), dpi=110, layout="constrained")
    by_steps, by_time = fig.subplots(1, 2)
    labelled: set[str] = set()
    for trial in data["results"]:
        name = trial["framework"]
        steps = [h["step"] for h in trial["history"]]
        times = [h["train_s"] for h in trial["history"]]
        returns = [h["return"] for h in trial["history"]]
        label = None if name in labelled else ("rlkit CNN + LSTM" if name == "rlkit"
                                               else "sb3-contrib RecurrentPPO")
        labelled.add(name)
        for ax, xs in ((by_steps, steps), (by_time, times)):
            ax.plot(xs, returns, color=COLORS.get(name, "gray"), marker="o", markersize=2.5,
                    linewidth=1.3, label=label)
    by_steps.set_xlabel("env steps")
    by_time.set_xlabel("training time (s, evaluations excluded)")
    for ax in (by_steps, by_time):
        ax.set_ylabel("evaluation return (20 episodes)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center right")
    fig.suptitle(f"MiniGrid-DoorKey-5x5-v0, same budget — {_machine(data)}", fontsize=10)
    fig.savefig(path)


def plot_ddpg_vs_sb3(data: dict[str, Any], path: Path) -> None:
    env = {"pendulum": "Pendulum-v1", "wall": "Pendulum-v1 (rlkit: torch-native, tuned)",
           "halfcheetah": "HalfCheetah-v5"}.get(data.get("part", ""), "")
    algos = [a for a in ("ddpg", "td3") if any(r["algo"] == a for r in data["results"])]
    fig = Figure(figsize=(6.0 * len(algos), 4.2), dpi=110, layout="constrained")
    axes = fig.subplots(1, len(algos), squeeze=False)[0]
    for ax, algo in zip(axes, algos, strict=True):
        labelled: set[str] = set()
        for trial in data["results"]:
            if trial["algo"] != algo or not trial["history"]:
                continue
            name = trial["framework"]
            times = [max(h["train_s"], 1e-2) for h in trial["history"]]
            returns = [h["return"] for h in trial["history"]]
            label = None if name in labelled else ("rlkit" if name == "rlkit" else "SB3")
            labelled.add(name)
            ax.plot(times, returns, color=COLORS.get(name, "gray"), alpha=0.75, linewidth=1.3,
                    marker="o", markersize=2.5, label=label)
        if data.get("part") != "halfcheetah":
            ax.axhline(-200, color="gray", linestyle="--", linewidth=1, label="-200")
        if data.get("part") == "wall":
            ax.set_xscale("log")
        ax.set_title(f"{algo.upper()} on {env} (one line per seed)", fontsize=10)
        ax.set_xlabel("training time (s, evaluations excluded)")
        ax.set_ylabel("evaluation return (20 episodes)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"rlkit vs Stable-Baselines3 — {_machine(data)}", fontsize=10)
    fig.savefig(path)


def _machine(data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    parts = [m.get("cpu"), f"{m['cores']} cores" if "cores" in m else None,
             m.get("device"), f"torch {m['torch']}" if "torch" in m else None]
    return ", ".join(str(p) for p in parts if p)


PLOTS = {"cartpole_vs_sb3": plot_cartpole_vs_sb3, "env_throughput": plot_env_throughput,
         "recurrent_vs_sb3": plot_recurrent_vs_sb3, "minigrid_vs_sb3": plot_minigrid_vs_sb3,
         "ddpg_vs_sb3_pendulum": plot_ddpg_vs_sb3, "ddpg_vs_sb3_wall": plot_ddpg_vs_sb3,
         "ddpg_vs_sb3_halfcheetah": plot_ddpg_vs_sb3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=HERE,
                        help="folder with the benchmarks' JSON files (default: benchmarks/)")
    parser.add_argument("--out", type=Path, default=HERE / "plots",
                        help="folder for the PNGs (default: benchmarks/plots)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in PLOTS.items():
        source = args.results / f"{name}.json"
        if not source.exists():
            print(f"skipped {name}: no {source}")
            continue
        target = args.out / f"{name}.png"
        draw(json.loads(source.read_text()), target)
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
