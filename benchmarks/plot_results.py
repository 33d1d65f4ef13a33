"""Draw the benchmark results as PNGs (from the JSON files the benchmarks write).

    python benchmarks/plot_results.py                      # every JSON found in benchmarks/
    python benchmarks/plot_results.py --out benchmarks/plots

* ``cartpole_vs_sb3.png`` -- evaluation return against training time, one line per seed, rlkit
  and Stable-Baselines3 side by side for PPO and DQN (``cartpole_vs_sb3.json``);
* ``env_throughput.png`` -- env steps per second against the number of envs, every variant
  (``env_throughput.json``).
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


def _machine(data: dict[str, Any]) -> str:
    m = data.get("machine", {})
    parts = [m.get("cpu"), f"{m['cores']} cores" if "cores" in m else None,
             m.get("device"), f"torch {m['torch']}" if "torch" in m else None]
    return ", ".join(str(p) for p in parts if p)


PLOTS = {"cartpole_vs_sb3": plot_cartpole_vs_sb3, "env_throughput": plot_env_throughput}


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
