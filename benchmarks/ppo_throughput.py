"""PPO training throughput (env steps per second, updates included) as the number of
environments grows: rlkit on its torch-native rlkit/CartPole-v1 and rlkit/Pendulum-v1 against
Stable-Baselines3's PPO on gymnasium's CartPole-v1 / Pendulum-v1 (``make_vec_env``, the same
N), with the same PPO settings, in the same run.

Settings for every N: 16 steps per env per rollout, 4 epochs, 4 minibatches per epoch, a
64x64 tanh MLP, Adam at 3e-4; evaluation and checkpoints off. Each (framework, env, N) trial
runs in a fresh process for ``--rollouts`` rollouts (at least ``--min-steps`` env steps); the
first rollout is a warm-up and not timed. SB3 runs only up to ``--sb3-max-envs`` envs (its
per-env Python loop makes larger N take minutes).

    python benchmarks/ppo_throughput.py
    python benchmarks/ppo_throughput.py --device cuda --sizes 1024 16384 131072
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cartpole_vs_sb3 import machine

ENVS = {"cartpole": ("rlkit/CartPole-v1", "CartPole-v1"),
        "pendulum": ("rlkit/Pendulum-v1", "Pendulum-v1")}
N_STEPS, N_EPOCHS, MINIBATCHES = 16, 4, 4


def rollouts_for(n: int, rollouts: int, min_steps: int) -> int:
    return max(rollouts, -(-min_steps // (n * N_STEPS)))


def trial_rlkit(env: str, n: int, rollouts: int, device: str) -> float:
    from rlkit import Plugins
    from rlkit.config import resolve
    from rlkit.loop import Trainer

    plugins = Plugins.load()
    steps = n * N_STEPS
    data = {
        "algorithm": {"name": "ppo", "n_steps": N_STEPS, "n_epochs": N_EPOCHS,
                      "batch_size": steps // MINIBATCHES, "optimizer": {"lr": 3e-4}},
        "backbone": {"name": "mlp", "hidden_sizes": [64, 64], "activation": "tanh"},
        "env": {"id": ENVS[env][0], "num_envs": n},
        "train": {"total_steps": steps * (rollouts + 1), "seed": 0, "device": device,
                  "log_every": steps},
        "eval": {"every": 0, "episodes": 1},
    }
    with tempfile.TemporaryDirectory(prefix="rlkit-bench-") as tmp:
        data["run"] = {"dir": tmp, "name": "run"}
        trainer = Trainer(resolve(data, plugins), plugins, progress=False)
        trainer.run(max_steps=steps)  # warm-up rollout and update
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.run(max_steps=steps * (rollouts + 1))
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return steps * rollouts / elapsed


def trial_sb3(env: str, n: int, rollouts: int) -> float:
    import torch

    torch.set_num_threads(1)
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    steps = n * N_STEPS
    venv = make_vec_env(ENVS[env][1], n_envs=n, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=N_STEPS, batch_size=steps // MINIBATCHES,
                n_epochs=N_EPOCHS, learning_rate=3e-4, seed=0, device="cpu", verbose=0)
    model.learn(total_timesteps=steps)  # warm-up
    start = time.perf_counter()
    model.learn(total_timesteps=steps * rollouts, reset_num_timesteps=False)
    return steps * rollouts / (time.perf_counter() - start)


def spawn(args: list[str]) -> float:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args],
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"trial {args} failed:\n{proc.stderr[-3000:]}")
    return float(lines[-1].split()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 1024, 4096, 16384])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--min-steps", type=int, default=20_000)
    parser.add_argument("--sb3-max-envs", type=int, default=256)
    parser.add_argument("--out")
    parser.add_argument("--trial", choices=["rlkit", "sb3"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.trial:
        env, n = args.envs[0], args.sizes[0]
        rollouts = rollouts_for(n, args.rollouts, args.min_steps)
        sps = (trial_rlkit(env, n, rollouts, args.device) if args.trial == "rlkit"
               else trial_sb3(env, n, rollouts))
        print(f"RESULT {sps}", flush=True)
        return 0
    info = machine()
    print(f"# {info}\n# rlkit device: {args.device}")
    print(f"{'env':>9} | {'N':>6} | {'SB3 steps/s':>11} | {'rlkit steps/s':>13} | ratio")
    rows = []
    for env in args.envs:
        for n in args.sizes:
            common = ["--envs", env, "--sizes", str(n), "--rollouts", str(args.rollouts),
                      "--min-steps", str(args.min_steps)]
            ours = spawn(["--trial", "rlkit", "--device", args.device, *common])
            ref = spawn(["--trial", "sb3", *common]) if n <= args.sb3_max_envs else None
            rows.append({"env": env, "num_envs": n, "rlkit": ours, "sb3": ref})
            ratio = f"{ours / ref:.1f}x" if ref else "-"
            ref_s = f"{ref:>11.3g}" if ref else f"{'-':>11}"
            print(f"{env:>9} | {n:>6} | {ref_s} | {ours:>13.3g} | {ratio}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
