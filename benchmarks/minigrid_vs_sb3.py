"""Recurrent PPO on MiniGrid-DoorKey-5x5-v0: rlkit against sb3-contrib's RecurrentPPO, same
budget, same run.

* ``rlkit`` -- ``experiments/minigrid_doorkey_lstm.yaml``: PPO with a small CNN encoder and a
  64-unit LSTM on minigrid's 7x7x3 partial view (``ImgObsWrapper``, then float32);
* ``sb3`` -- ``RecurrentPPO("MlpLstmPolicy")`` on the same envs and wrappers with the same
  PPO hyperparameters and a 64-unit LSTM. What sb3-contrib offers for images,
  ``CnnLstmPolicy``, uses the Nature CNN, whose 8x8 stride-4 kernels need frames of 36x36 or
  more; on a 7x7 view its policy runs the LSTM on the flattened view.

Both train for the experiment file's budget; every ``eval.every`` env steps, 20 deterministic
episodes with a fresh recurrent state (rlkit's evaluation; for SB3 the protocol of
``recurrent_vs_sb3.py``). The return is minigrid's: 1 - 0.9 * steps / max_steps on reaching the
goal, 0 otherwise. Each trial runs in its own process, the frameworks alternating.

    python benchmarks/minigrid_vs_sb3.py --seeds 0 --out benchmarks/minigrid_vs_sb3.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cartpole_vs_sb3 import machine, sb3_timed_eval
from recurrent_vs_sb3 import evaluate_recurrent_sb3, trial_rlkit_file

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "minigrid_doorkey_lstm.yaml"
ENV_ID = "MiniGrid-DoorKey-5x5-v0"
EVAL_EPISODES = 20


def settings() -> dict[str, Any]:
    """The experiment file's PPO settings, budget and evaluation period."""
    from rlkit.config import read_yaml

    data = read_yaml(EXPERIMENT)
    return {"algorithm": data["algorithm"], "num_envs": data["env"]["num_envs"],
            "total_steps": data["train"]["total_steps"], "every": data["eval"]["every"],
            "hidden_size": data["backbone"]["hidden_size"]}


def wrap(env: Any) -> Any:
    import gymnasium as gym
    import numpy as np
    from minigrid.wrappers import ImgObsWrapper

    return gym.wrappers.DtypeObservation(ImgObsWrapper(env), np.float32)


def trial_sb3(seed: int, budget: int | None) -> dict[str, Any]:
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the ids)
    import torch
    from gymnasium.vector import AutoresetMode
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    cfg = settings()
    algo = cfg["algorithm"]
    total = budget or cfg["total_steps"]
    every = cfg["every"]

    def make_eval(n: int) -> Any:
        return gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="sync", wrappers=[wrap],
                            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})

    env = make_vec_env(ENV_ID, n_envs=cfg["num_envs"], seed=seed, wrapper_class=wrap)
    lr = algo["optimizer"]["lr"]
    model = RecurrentPPO("MlpLstmPolicy", env, n_steps=algo["n_steps"],
                         batch_size=algo["batch_size"], n_epochs=algo["n_epochs"],
                         gamma=algo["gamma"], gae_lambda=algo["gae_lambda"],
                         clip_range=algo["clip_coef"], ent_coef=algo["ent_coef"],
                         vf_coef=algo["vf_coef"], max_grad_norm=algo["max_grad_norm"],
                         learning_rate=lr, seed=seed, device="cpu", verbose=0,
                         policy_kwargs={"lstm_hidden_size": cfg["hidden_size"]})
    callback = sb3_timed_eval(
        seed, total, every=every,
        evaluate=lambda model, s: evaluate_recurrent_sb3(model, s, EVAL_EPISODES, make_eval))
    callback.started = time.perf_counter()
    model.learn(total_timesteps=total, callback=callback)
    total_s = time.perf_counter() - callback.started
    return {"env_steps": int(model.num_timesteps), "train_s": total_s - callback.eval_s,
            "eval_s": callback.eval_s, "history": callback.history}


def run_trial(framework: str, seed: int, budget: int | None) -> None:
    if framework == "rlkit":
        sets = [] if budget is None else [f"train.total_steps={budget}"]
        result = trial_rlkit_file(EXPERIMENT, sets, seed, "cpu")
    else:
        result = trial_sb3(seed, budget)
    history = result["history"]
    result.update(framework=framework, seed=seed,
                  steps_per_s=result["env_steps"] / result["train_s"],
                  final_return=history[-1]["return"],
                  best_return=max(h["return"] for h in history),
                  peak_rss_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print("RESULT " + json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=int, default=None,
                        help="env steps per trial (default: the experiment file's)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--trial", choices=("rlkit", "sb3"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trial:
        run_trial(args.trial, args.seeds[0], args.budget)
        return 0
    info = machine()
    results = []
    for i, seed in enumerate(args.seeds):
        for framework in (("sb3", "rlkit") if i % 2 else ("rlkit", "sb3")):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--trial", framework,
                   "--seeds", str(seed)] + ([] if args.budget is None
                                            else ["--budget", str(args.budget)])
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"{framework} seed {seed} failed:\n{proc.stderr[-3000:]}")
            r = json.loads(lines[-1][len("RESULT "):])
            results.append(r)
            curve = ", ".join(f"{h['step'] // 1000}k: {h['return']:.2f}" for h in r["history"])
            print(f"{framework} seed {seed}: final {r['final_return']:.3f}, best "
                  f"{r['best_return']:.3f}, {r['env_steps']:,} steps in {r['train_s']:.1f} s "
                  f"({r['steps_per_s']:,.0f}/s), {r['peak_rss_mib']:.0f} MiB\n  {curve}",
                  flush=True)
            if args.out:
                args.out.write_text(json.dumps({"machine": info, "command": sys.argv,
                                                "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
