"""Time-to-solve leaderboard: rlkit's fastest built-in configuration against SB3's zoo one.

For each task, ``rlkit compare`` trains two experiment files over the same seeds, in the same
run: rlkit's fastest configuration for the task and Stable-Baselines3's algorithm with
rl-baselines3-zoo's tuned hyperparameters for it, run through the ``rlkit-sb3`` plugin (SB3's
own networks, buffers and ``train()``, driven by rlkit's loop). Both therefore meet the same
environment ids, the same evaluation protocol (20 deterministic episodes on separate envs,
seeded alike) and the same clock. Every trial stops at its first evaluation whose mean return
reaches the task's solved threshold (gymnasium's ``reward_threshold``; Pendulum, which has
none, uses -200), or at its budget (the zoo's ``n_timesteps`` for SB3).

*Time to solve* is training time: the run's wall time (set-up included, interpreter start-up
not) minus the time spent in evaluations, taken from the run's ``summary.json``
(``wall_time_s - eval_time_s``). A trial that never reached the threshold counts with its whole
training time, as a lower bound, and is shown with ``>``.

For each task the script prints and writes: per contender the mean time to solve with a 95%
percentile-bootstrap interval over seeds, how many seeds solved it, and the ratio SB3 / rlkit
of the mean times with its own bootstrap interval (seeds resampled independently per
contender). A bar chart (log scale) goes to ``--plot``.

    pip install -e plugins/rlkit-sb3
    python benchmarks/leaderboard.py --seeds 5 --jobs 2 --out /tmp/leaderboard \\
        --json benchmarks/leaderboard.json --markdown /tmp/leaderboard.md \\
        --plot benchmarks/plots/leaderboard.png
    python benchmarks/leaderboard.py --tasks cartpole pendulum --seeds 5   # some tasks only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cartpole_vs_sb3 import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "plugins" / "rlkit-sb3" / "experiments"
"""SB3's contenders: rl-baselines3-zoo's hyperparameters as ``sb3.*`` experiment files."""


@dataclass(frozen=True)
class Task:
    name: str
    env: str
    threshold: float
    rlkit: Path
    sb3: Path


TASKS = [
    Task("cartpole", "CartPole-v1", 475.0, ROOT / "experiments" / "cartpole_fast.yaml",
         ZOO / "cartpole_sb3_ppo.yaml"),
    Task("acrobot", "Acrobot-v1", -100.0, ROOT / "experiments" / "acrobot_ppo.yaml",
         ZOO / "acrobot_sb3_dqn.yaml"),
    Task("mountaincar", "MountainCar-v0", -110.0, ROOT / "experiments" / "mountaincar_ppo.yaml",
         ZOO / "mountaincar_sb3_dqn.yaml"),
    Task("pendulum", "Pendulum-v1", -200.0, ROOT / "experiments" / "pendulum_td3_gpu.yaml",
         ZOO / "pendulum_sb3_sac.yaml"),
    Task("mountaincar_continuous", "MountainCarContinuous-v0", 90.0,
         ROOT / "experiments" / "mountaincar_continuous_td3_fast.yaml",
         ZOO / "mountaincar_continuous_sb3_sac.yaml"),
    Task("breakout", "rlkit/Breakout-v0 (10x10 images)", 20.0,
         ROOT / "experiments" / "breakout_fast.yaml", ZOO / "breakout_sb3_ppo.yaml"),
]
RESAMPLES = 10_000


def training_time(run_dir: Path) -> tuple[float | None, bool, int | None]:
    """(training time in s, solved, env steps) of one trial from its ``summary.json``."""
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None, False, None
    if summary.get("status") not in ("finished", "target_reached"):
        return None, False, None
    seconds = float(summary["wall_time_s"]) - float(summary.get("eval_time_s") or 0.0)
    return seconds, bool(summary.get("target_reached")), summary.get("env_steps")


def mean_ci(values: list[float], seed: int = 0) -> tuple[float, float, float]:
    """The mean with its 95% percentile-bootstrap interval (``rlkit compare``'s statistics)."""
    from rlkit.workflow import stats

    low, high = stats.bootstrap_ci(values, "mean", resamples=RESAMPLES, seed=seed)
    return stats.mean(values), low, high


def ratio_ci(slow: list[float], fast: list[float], seed: int = 0) -> tuple[float, float, float]:
    """mean(slow) / mean(fast) with a percentile-bootstrap interval (independent resamples)."""
    a, b = np.asarray(slow, dtype=np.float64), np.asarray(fast, dtype=np.float64)
    rng = np.random.default_rng(seed)
    ra = a[rng.integers(0, a.size, size=(RESAMPLES, a.size))].mean(axis=1)
    rb = b[rng.integers(0, b.size, size=(RESAMPLES, b.size))].mean(axis=1)
    ratios = ra / rb
    return (float(a.mean() / b.mean()), float(np.percentile(ratios, 2.5)),
            float(np.percentile(ratios, 97.5)))


def run_task(task: Task, seeds: int, jobs: int, out: Path) -> dict[str, Any]:
    from rlkit.workflow.compare import compare

    started = time.time()
    overrides = [f"eval.target_return={task.threshold}", "eval.episodes=20",
                 "eval.deterministic=true"]
    _, trials, _ = compare([task.rlkit, task.sb3], seeds=seeds, out=out / task.name, jobs=jobs,
                           overrides=overrides)
    result: dict[str, Any] = {"task": task.name, "env": task.env, "threshold": task.threshold,
                              "wall_s": round(time.time() - started, 1), "contenders": {}}
    names = {str(task.rlkit): "rlkit", str(task.sb3): "sb3"}
    for trial in trials:
        who = names[str(trial.config)]
        seconds, solved, steps = training_time(trial.run_dir)
        entry = result["contenders"].setdefault(who, {"config": str(trial.config.relative_to(
            ROOT)), "trials": []})
        entry["trials"].append({"seed": trial.seed, "time_s": seconds, "solved": solved,
                                "env_steps": steps, "status": trial.status,
                                "peak_rss_mib": trial.peak_rss_mib, "error": trial.error})
    for entry in result["contenders"].values():
        times = [t["time_s"] for t in entry["trials"] if t["time_s"] is not None]
        entry["solved"] = sum(t["solved"] for t in entry["trials"])
        entry["finished"] = len(times)
        entry["time_s"] = mean_ci(times) if times else None
    rl, sb = result["contenders"]["rlkit"], result["contenders"]["sb3"]
    rl_times = [t["time_s"] for t in rl["trials"] if t["time_s"] is not None]
    sb_times = [t["time_s"] for t in sb["trials"] if t["time_s"] is not None]
    result["ratio"] = ratio_ci(sb_times, rl_times) if rl_times and sb_times else None
    # the ratio is a lower bound where SB3 missed the threshold on some seed (its time there
    # is its whole budget), and an upper bound where rlkit did
    result["ratio_kind"] = ("lower bound" if sb["solved"] < sb["finished"] and
                            rl["solved"] == rl["finished"] else
                            "upper bound" if rl["solved"] < rl["finished"] and
                            sb["solved"] == sb["finished"] else
                            "mixed" if rl["solved"] < rl["finished"] else "exact")
    return result


OVERHEAD_STEPS = {"cartpole": 20_000, "acrobot": 10_000, "mountaincar": 10_000,
                  "pendulum": 3_000, "mountaincar_continuous": 5_000, "breakout": 20_000}
"""Env steps of each task's SB3 configuration timed both ways by ``--overhead``."""

NATIVE = """
import json, sys, time
import gymnasium as gym
from stable_baselines3.common.vec_env import DummyVecEnv
from rlkit.config import load_experiment
from rlkit.loop import Trainer
from rlkit.plugins import Plugins
path, steps, run_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
plugins = Plugins.load()
experiment = load_experiment(path, plugins, [f"train.total_steps={steps}"])
trainer = Trainer(experiment, plugins, run_dir=run_dir, progress=False)
model = trainer.agent.model  # the SB3 model the plugin built, with the file's settings
env = experiment.env
model.set_env(DummyVecEnv([lambda: gym.make(env.id, **env.kwargs)] * env.num_envs))
started = time.perf_counter()
model.learn(total_timesteps=steps)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def adapter_overhead(task: Task, out: Path) -> dict[str, Any]:
    """SB3's own ``learn()`` against the same model driven by rlkit through the plugin, over
    the same env steps with no evaluation: how much of SB3's time the plugin adds."""
    import subprocess

    steps = OVERHEAD_STEPS[task.name]
    run_dir = out / "overhead" / task.name
    command = [sys.executable, "-m", "rlkit.cli", "train", str(task.sb3), "--no-progress",
               "--run-dir", str(run_dir / "rlkit"), "--set", f"train.total_steps={steps}",
               "--set", "eval.every=0", "--set", "eval.episodes=1", "--set",
               "train.checkpoint_every=0"]
    subprocess.run(command, check=True, capture_output=True)
    summary = json.loads((run_dir / "rlkit" / "summary.json").read_text())
    through_rlkit = float(summary["wall_time_s"]) - float(summary["eval_time_s"])
    native = subprocess.run([sys.executable, "-c", NATIVE, str(task.sb3), str(steps),
                             str(run_dir / "native")], check=True, capture_output=True,
                            text=True)
    learn = json.loads(native.stdout.strip().splitlines()[-1])["seconds"]
    return {"task": task.name, "steps": steps, "sb3_learn_s": round(learn, 2),
            "through_rlkit_s": round(through_rlkit, 2),
            "ratio": round(through_rlkit / learn, 3)}


def _fmt_time(entry: dict[str, Any]) -> str:
    if entry["time_s"] is None:
        return "n/a"
    mean, low, high = entry["time_s"]
    sign = ">" if entry["solved"] < entry["finished"] else ""
    return f"{sign}{mean:.1f} [{low:.1f}, {high:.1f}]"


def markdown(results: list[dict[str, Any]], info: dict[str, Any], command: str) -> str:
    lines = [
        f"**Command**: `{command}`",
        f"**Machine**: {info['cpu']}, {info['cores']} cores, Python {info['python']}, torch "
        f"{info['torch']}, gymnasium {info['gymnasium']}, stable-baselines3 "
        f"{info['stable_baselines3']}. **Date**: {info['date']}.",
        "",
        "| task | threshold | rlkit (config) | rlkit time to solve, s [95% CI] | solved | "
        "SB3 zoo (config) | SB3 time to solve, s [95% CI] | solved | SB3 / rlkit [95% CI] |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in results:
        rl, sb = r["contenders"]["rlkit"], r["contenders"]["sb3"]
        ratio = "n/a" if r["ratio"] is None else (
            f"{'≥' if r['ratio_kind'] == 'lower bound' else ''}"
            f"**{r['ratio'][0]:.1f}×** [{r['ratio'][1]:.1f}, {r['ratio'][2]:.1f}]")
        lines.append(
            f"| {r['env']} | {r['threshold']:g} | `{Path(rl['config']).name}` | "
            f"{_fmt_time(rl)} | {rl['solved']}/{len(rl['trials'])} | "
            f"`{Path(sb['config']).name}` | {_fmt_time(sb)} | "
            f"{sb['solved']}/{len(sb['trials'])} | {ratio} |")
    lines += ["", "Per seed (training time in s, env steps; `-` = threshold not reached):", "",
              "| task | contender | " + " | ".join(
                  f"seed {t['seed']}" for t in results[0]["contenders"]["rlkit"]["trials"])
              + " |", "| --- | --- |" + " ---: |" * len(
                  results[0]["contenders"]["rlkit"]["trials"])]
    for r in results:
        for who in ("rlkit", "sb3"):
            cells = []
            for t in r["contenders"][who]["trials"]:
                if t["time_s"] is None:
                    cells.append(f"crashed: {t['error']}" if t["error"] else "crashed")
                else:
                    mark = "" if t["solved"] else "-"
                    cells.append(f"{mark}{t['time_s']:.1f} ({t['env_steps']:,})")
            lines.append(f"| {r['task']} | {who} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(9, 4.8))
    x = np.arange(len(results))
    for k, (who, colour) in enumerate((("rlkit", "tab:blue"), ("sb3", "tab:orange"))):
        means, lows, highs, hatches = [], [], [], []
        for r in results:
            entry = r["contenders"][who]
            mean, low, high = entry["time_s"] or (np.nan, np.nan, np.nan)
            means.append(mean)
            lows.append(mean - low)
            highs.append(high - mean)
            hatches.append("//" if entry["solved"] < entry["finished"] else "")
        bars = ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=[lows, highs], capsize=3,
                      color=colour, label="rlkit (fastest built-in)" if who == "rlkit" else
                      "SB3 (rl-baselines3-zoo), through rlkit-sb3")
        for bar, hatch in zip(bars, hatches):
            bar.set_hatch(hatch)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for i, r in enumerate(results):
        if r["ratio"] is not None:
            top = max((r["contenders"][w]["time_s"] or (0, 0, 0))[2] for w in ("rlkit", "sb3"))
            sign = "≥" if r["ratio_kind"] == "lower bound" else ""
            ax.annotate(f"{sign}{r['ratio'][0]:.1f}×", (i, top), textcoords="offset points",
                        xytext=(0, 4), ha="center", fontsize=9, fontweight="bold")
    ax.set_xticks(x, [r["env"].split(" ")[0] for r in results], rotation=15)
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 2.0)  # room for the ratios
    ax.set_ylabel("training time to the solved threshold (s)")
    ax.set_title("Time to solve, mean over seeds with 95% bootstrap CI "
                 "(hatched: some seeds never solved it; bar = lower bound)", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=[t.name for t in TASKS],
                        default=[t.name for t in TASKS])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1,
                        help="trials at a time (each uses one torch thread)")
    parser.add_argument("--out", type=Path, default=Path("runs/leaderboard"))
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    parser.add_argument("--plot", type=Path, help="write the bar chart (PNG) here")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                        help="train nothing: merge the results of earlier runs (--json files; "
                             "a later file's task replaces an earlier one's) into one table "
                             "and plot, in the tasks' order")
    parser.add_argument("--overhead", action="store_true",
                        help="train nothing to the threshold: time each task's SB3 file with "
                             "SB3's own learn() and through rlkit (the plugin's cost)")
    args = parser.parse_args(argv)
    if args.overhead:
        rows = [adapter_overhead(t, args.out) for t in TASKS if t.name in args.tasks]
        for row in rows:
            print(f"{row['task']}: {row['steps']:,} env steps, SB3 learn() "
                  f"{row['sb3_learn_s']:.2f} s, through rlkit {row['through_rlkit_s']:.2f} s, "
                  f"ratio {row['ratio']:.2f}", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"machine": machine(), "overhead": rows},
                                            indent=1))
        return 0
    if args.merge:
        by_task: dict[str, dict[str, Any]] = {}
        dates = []
        for path in args.merge:
            data = json.loads(path.read_text())
            dates.append(data["machine"]["date"])
            by_task.update({r["task"]: r for r in data["results"]})
        merged = [by_task[t.name] for t in TASKS if t.name in by_task]
        info = {**data["machine"], "date": " to ".join(dict.fromkeys(dates))}
        text = markdown(merged, info, "python benchmarks/leaderboard.py " + " ".join(
            argv or sys.argv[1:]))
        print(text)
        if args.markdown:
            args.markdown.write_text(text)
        if args.json:
            args.json.write_text(json.dumps({"machine": info, "results": merged}, indent=1))
        if args.plot:
            plot(merged, args.plot)
        return 0
    info = machine()
    results = []
    for task in TASKS:
        if task.name not in args.tasks:
            continue
        result = run_task(task, args.seeds, args.jobs, args.out)
        results.append(result)
        rl, sb = result["contenders"]["rlkit"], result["contenders"]["sb3"]
        ratio = result["ratio"]
        print(f"{task.name}: rlkit {_fmt_time(rl)} s ({rl['solved']}/{len(rl['trials'])} "
              f"solved), SB3 {_fmt_time(sb)} s ({sb['solved']}/{len(sb['trials'])} solved), "
              f"SB3/rlkit {'n/a' if ratio is None else f'{ratio[0]:.1f}x'} "
              f"({result['ratio_kind']}); {result['wall_s']} s", flush=True)
        if args.json:  # after every task, so an interrupted run keeps what finished
            args.json.write_text(json.dumps({"machine": info, "results": results}, indent=1))
    command = "python benchmarks/leaderboard.py " + " ".join(argv or sys.argv[1:])
    text = markdown(results, info, command)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
