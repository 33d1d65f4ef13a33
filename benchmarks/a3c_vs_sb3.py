"""rlkit's A3C (and A2C) against Stable-Baselines3's A2C on CartPole-v1, same run.

Two parts (``--part``):

* ``wall`` -- wall time to an evaluation return of 475: SB3's A2C with rl-baselines3-zoo's
  CartPole-v1 hyperparameters (8 envs, SB3's defaults otherwise) against rlkit's ``a2c``
  (``experiments/cartpole_a2c.yaml``, the same hyperparameters) and ``a3c``
  (``experiments/cartpole_a3c.yaml``) with 1 and 2 worker processes, and with 2 Ray actors
  (``cartpole_a3c_ray.yaml``). Every contender stops at its first evaluation reaching 475.
* ``scaling`` -- env steps/s of A3C with 1, 2, ... workers (``--workers``) over a fixed budget
  with no evaluation, as processes and as Ray actors, beside SB3's and rlkit's A2C: the scaling
  ratio (N workers / 1 worker) and the Ray runner's overhead (processes / Ray, same workers).

The protocol is ``cartpole_vs_sb3.py``'s: every trial runs in a fresh interpreter; contenders
alternate within each seed; every evaluation is 20 deterministic episodes on separate
environments seeded as rlkit seeds them, with the clock stopped -- *training time* is wall time
since ``learn()`` / ``Trainer.run()`` was called (so A3C's worker start-up, and Ray's, count)
minus the time spent in evaluations. SB3 runs with one torch thread (its fastest setting here).

    python benchmarks/a3c_vs_sb3.py --part wall --seeds 0 1 2 3 4 --out a3c_wall.json
    python benchmarks/a3c_vs_sb3.py --part scaling --workers 1 2 --seeds 0 1 2
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
    EVAL_EPISODES,
    EVAL_EVERY,
    TARGET,
    machine,
    sb3_timed_eval,
    timed_trainer_class,
)

ROOT = Path(__file__).resolve().parents[1]
WALL_BUDGET = 500_000
"""Env steps a contender may take to reach 475 (the zoo trains A2C on CartPole for 500k)."""
SCALING_BUDGET = 40_000


def contenders(part: str, workers: list[int]) -> list[str]:
    if part == "wall":
        return ["sb3-a2c", "rlkit-a2c", "rlkit-a3c-1", "rlkit-a3c-2", "rlkit-a3c-fork-2",
                "rlkit-a3c-ray-2"]
    return (["sb3-a2c", "rlkit-a2c"] + [f"rlkit-a3c-{n}" for n in workers]
            + [f"rlkit-a3c-ray-{n}" for n in workers])


# --- one trial, in its own process -----------------------------------------------------------


def trial_rlkit(name: str, seed: int, budget: int, evaluate: bool) -> dict[str, Any]:
    from rlkit import Plugins, load_experiment

    if name == "rlkit-a2c":
        path, overrides = "cartpole_a2c.yaml", []
    elif name.startswith("rlkit-a3c-ray-"):
        path = "cartpole_a3c_ray.yaml"
        overrides = [f"algorithm.num_workers={name.rsplit('-', 1)[1]}"]
    else:
        path = "cartpole_a3c.yaml"
        overrides = [f"algorithm.num_workers={name.rsplit('-', 1)[1]}"]
        if "-fork-" in name:  # workers forked from the trainer's process: no imports again
            overrides.append("algorithm.start_method=fork")
    class TimedTrainer(timed_trainer_class()):  # type: ignore[misc]
        first: tuple[float, int] | None = None  # (time, env steps) of the workers' first report

        def driven_loop(self, driver: Any, max_steps: int | None = None) -> Any:
            run_until = driver.run_until

            def timed(step: int, stop: Any) -> Any:
                for progress in run_until(step, stop):
                    if self.first is None and progress.env_steps > 0:
                        self.first = (time.perf_counter(), progress.env_steps)
                    yield progress

            driver.run_until = timed
            return super().driven_loop(driver, max_steps)

    plugins = Plugins.load()
    with tempfile.TemporaryDirectory(prefix="rlkit-bench-") as run_dir:
        overrides += [f"train.seed={seed}", f"train.total_steps={budget}",
                      f"eval.every={EVAL_EVERY if evaluate else 0}",
                      f"eval.episodes={EVAL_EPISODES}", "train.checkpoint_every=0",
                      f"eval.target_return={TARGET if evaluate else 'null'}",
                      f"run.dir={run_dir}", "run.name=run"]
        experiment = load_experiment(ROOT / "experiments" / path, plugins, overrides)
        trainer = TimedTrainer(experiment, plugins, progress=False)
        trainer.history = []
        trainer.started = time.perf_counter()
        summary = trainer.run()
        ended = time.perf_counter()
        total_s = ended - trainer.started
    result = {"env_steps": summary["env_steps"], "train_s": total_s - trainer.eval_s,
              "eval_s": trainer.eval_s, "history": trainer.history}
    if trainer.first is not None and not evaluate:  # workers: the rate once they run
        first_time, first_steps = trainer.first
        result["startup_s"] = first_time - trainer.started
        result["steady_steps_per_s"] = (summary["env_steps"] - first_steps) / (
            ended - first_time - trainer.eval_s)
    return result


def trial_sb3(seed: int, budget: int, evaluate: bool) -> dict[str, Any]:
    """SB3's A2C with rl-baselines3-zoo's CartPole-v1 entry (n_envs 8, ent_coef 0.0)."""
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu", verbose=0)
    callback = sb3_timed_eval(seed, budget, stop_at_target=True) if evaluate else None
    started = time.perf_counter()
    if callback is not None:
        callback.started = started
    model.learn(total_timesteps=budget, callback=callback)
    total_s = time.perf_counter() - started
    eval_s = callback.eval_s if callback is not None else 0.0
    return {"env_steps": int(model.num_timesteps), "train_s": total_s - eval_s,
            "eval_s": eval_s, "history": callback.history if callback is not None else []}


def run_trial(name: str, seed: int, budget: int, part: str) -> None:
    evaluate = part == "wall"
    if name == "sb3-a2c":
        result = trial_sb3(seed, budget, evaluate)
    else:
        result = trial_rlkit(name, seed, budget, evaluate)
    history = result["history"]
    reached = next((h for h in history if h["return"] >= TARGET), None) if evaluate else None
    result.update(
        contender=name, seed=seed, part=part,
        steps_per_s=result["env_steps"] / result["train_s"],
        final_return=history[-1]["return"] if history else None,
        time_to_target_s=None if reached is None else reached["train_s"],
        steps_to_target=None if reached is None else reached["step"],
        peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    print("RESULT " + json.dumps(result), flush=True)


# --- the driver ------------------------------------------------------------------------------


def spawn(name: str, seed: int, budget: int, part: str) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--trial", name, "--part", part,
           "--seeds", str(seed), "--budget", str(budget)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"trial {name} seed {seed} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


LABELS = {"sb3-a2c": "SB3 A2C (zoo)", "rlkit-a2c": "rlkit A2C (same hyperparameters)"}


def label(name: str) -> str:
    if name in LABELS:
        return LABELS[name]
    n = name.rsplit("-", 1)[1]
    backend = ("Ray actors" if "-ray-" in name else "processes, forked" if "-fork-" in name
               else "processes")
    return f"rlkit A3C, {n} worker{'s' if n != '1' else ''} ({backend})"


def markdown(results: list[dict[str, Any]], names: list[str], part: str) -> str:
    rows = []
    by = {n: [r for r in results if r["contender"] == n] for n in names}
    ref = by.get("sb3-a2c") or []
    if part == "wall":
        rows.append("| contender | reached 475 | time to 475 (s), mean | median | "
                    "env steps to 475, mean | env steps/s | peak RSS (MiB) |")
        rows.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        ref_time = _mean([r["time_to_target_s"] for r in ref])
        for n in names:
            rs = by[n]
            times = [r["time_to_target_s"] for r in rs if r["time_to_target_s"] is not None]
            mean_t = _mean(times)  # type: ignore[arg-type]
            ratio = (f" ({ref_time / mean_t:.1f}× shorter)" if ref_time and mean_t and
                     n != "sb3-a2c" else "")
            rows.append(
                f"| {label(n)} | {len(times)}/{len(rs)} | {_fmt(mean_t, '.1f')}{ratio} | "
                f"{_fmt(statistics.median(times) if times else None, '.1f')} | "
                f"{_fmt(_mean([r['steps_to_target'] for r in rs]), ',.0f')} | "
                f"{_fmt(_mean([r['steps_per_s'] for r in rs]), ',.0f')} | "
                f"{_fmt(_mean([r['peak_rss_mib'] for r in rs]), '.0f')} |")
        return "\n".join(rows)
    rows.append("| contender | env steps/s, mean (start-up included) | vs 1 worker | env "
                "steps/s once running | vs 1 worker | start-up (s) |")
    rows.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    sps = {n: _mean([r["steps_per_s"] for r in by[n]]) for n in names}
    steady = {n: _mean([r.get("steady_steps_per_s") for r in by[n]]) for n in names}
    for n in names:
        base = steady_base = None
        if n.startswith("rlkit-a3c"):
            base = sps.get(n.rsplit("-", 1)[0] + "-1")
            steady_base = steady.get(n.rsplit("-", 1)[0] + "-1")
        ratio = f"{sps[n] / base:.2f}×" if base and sps[n] else "—"
        steady_ratio = (f"{steady[n] / steady_base:.2f}×" if steady_base and steady[n]
                        else "—")
        rows.append(f"| {label(n)} | {_fmt(sps[n], ',.0f')} | {ratio} | "
                    f"{_fmt(steady[n], ',.0f')} | {steady_ratio} | "
                    f"{_fmt(_mean([r.get('startup_s') for r in by[n]]), '.1f')} |")
    return "\n".join(rows)


def plot_scaling(results: list[dict[str, Any]], names: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for backend, marker in (("", "o"), ("ray-", "s")):
        points = []
        for n in names:
            if n.startswith(f"rlkit-a3c-{backend}") and n.rsplit("-", 1)[1].isdigit() and (
                    ("-ray-" in n) == bool(backend)):
                workers = int(n.rsplit("-", 1)[1])
                values = [r["steps_per_s"] for r in results if r["contender"] == n]
                if values:
                    points.append((workers, statistics.fmean(values)))
        if points:
            points.sort()
            ax.plot(*zip(*points), marker=marker,
                    label=f"rlkit A3C ({'Ray actors' if backend else 'processes'})")
    for n, style in (("sb3-a2c", ":"), ("rlkit-a2c", "--")):
        values = [r["steps_per_s"] for r in results if r["contender"] == n]
        if values:
            ax.axhline(statistics.fmean(values), linestyle=style, color="gray" if n == "sb3-a2c"
                       else "black", label=LABELS[n])
    ax.set_xlabel("workers")
    ax.set_ylabel("env steps / s (training)")
    ax.set_title("A3C on CartPole-v1: throughput against workers")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("wall", "scaling"), default="wall")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts for --part scaling")
    parser.add_argument("--contenders", nargs="+", default=None,
                        help="a subset of the part's contenders")
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write raw results as JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    parser.add_argument("--plot", type=Path, default=None, help="scaling plot (PNG)")
    parser.add_argument("--trial", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    budget = args.budget or (WALL_BUDGET if args.part == "wall" else SCALING_BUDGET)
    if args.trial:
        run_trial(args.trial, args.seeds[0], budget, args.part)
        return 0
    names = args.contenders or contenders(args.part, args.workers)
    info = machine()
    print(f"{info['cpu']}, {info['cores']} cores; torch {info['torch']}, stable-baselines3 "
          f"{info['stable_baselines3']}; {info['date']}; load {info['load_average']}",
          flush=True)
    results: list[dict[str, Any]] = []
    for seed in args.seeds:
        order = names if seed % 2 == 0 else list(reversed(names))  # alternate who goes first
        for name in order:
            r = spawn(name, seed, budget, args.part)
            results.append(r)
            print(f"  {label(name):45s} seed {seed}: {r['steps_per_s']:9,.0f} steps/s, "
                  f"to 475 {_fmt(r['time_to_target_s'], '.1f', ' s')} "
                  f"({_fmt(r['steps_to_target'], ',.0f')} steps), "
                  f"{r['peak_rss_mib']:.0f} MiB", flush=True)
            if args.out:
                args.out.write_text(json.dumps({"machine": info, "part": args.part,
                                                "budget": budget, "results": results},
                                               indent=1))
    table = markdown(results, names, args.part)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.plot and args.part == "scaling":
        plot_scaling(results, names, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
