"""Environment steps per second with random actions: rlkit's torch-native CartPole against
gymnasium's own vectorized CartPole, in the same run.

Contenders, for each batch size N:

* ``rlkit eager``     -- ``rlkit_envs.CartPole(N, device=D)``, step in eager torch;
* ``rlkit compiled``  -- the same with ``compile=True`` (``torch.compile`` of the pure step);
* ``gym vector``      -- ``gymnasium.make_vec("CartPole-v1", N, vectorization_mode=
  "vector_entry_point")``: gymnasium's numpy-vectorized CartPole;
* ``gym sync``        -- ``SyncVectorEnv`` of N single CartPoles (small N only: it is slow).

Actions are drawn once per contender (a pool of 64 random action batches in the contender's
own format, cycled), so the timing is the environment's step including auto-reset and the
output tensors, not the random number generator. Each contender is timed for at least
``--seconds`` after a warm-up (compilation time is reported separately, not counted), and the
best of ``--repeats`` interleaved rounds is kept. On CUDA the clock is read after
``torch.cuda.synchronize()``.

    python benchmarks/env_throughput.py                       # CPU, N = 64 ... 2^20
    python benchmarks/env_throughput.py --device cuda --sizes 4096 65536 1048576
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime
from importlib import metadata
from typing import Any

import gymnasium as gym
import numpy as np
import rlkit_envs
import torch

POOL = 64
SYNC_MAX = 4096


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_rlkit(n: int, device: torch.device, compiled: bool) -> tuple[Any, Any, float]:
    env = rlkit_envs.CartPole(n, device=device, compile=compiled)
    env.reset(seed=0)
    g = torch.Generator(device=device).manual_seed(0)
    pool = [torch.randint(0, 2, (n,), device=device, generator=g) for _ in range(POOL)]
    start = time.perf_counter()
    for i in range(3):  # warm-up (and compilation)
        env.step(pool[i])
    _sync(device)
    return env, pool, time.perf_counter() - start


def make_gym(n: int, mode: str) -> tuple[Any, Any, float]:
    if mode == "vector":
        env = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
    else:
        env = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    pool = [rng.integers(0, 2, n) for _ in range(POOL)]
    start = time.perf_counter()
    for i in range(3):
        env.step(pool[i])
    return env, pool, time.perf_counter() - start


def time_steps(env: Any, pool: list[Any], n: int, seconds: float, device: torch.device) -> float:
    """Env steps per second (N per batched step) over at least ``seconds``."""
    steps = 0
    _sync(device)
    start = time.perf_counter()
    while True:
        for _ in range(8):
            env.step(pool[steps % POOL])
            steps += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return steps * n / elapsed


def bench_size(n: int, device: torch.device, seconds: float, repeats: int,
               with_compile: bool) -> dict[str, Any]:
    contenders: dict[str, tuple[Any, Any, float]] = {
        "rlkit eager": make_rlkit(n, device, False),
        "gym vector": make_gym(n, "vector"),
    }
    if with_compile:
        contenders["rlkit compiled"] = make_rlkit(n, device, True)
    if n <= SYNC_MAX:
        contenders["gym sync"] = make_gym(n, "sync")
    best: dict[str, float] = {name: 0.0 for name in contenders}
    for _ in range(repeats):  # interleaved rounds: every contender sees the same machine load
        for name, (env, pool, _) in contenders.items():
            dev = device if name.startswith("rlkit") else torch.device("cpu")
            best[name] = max(best[name], time_steps(env, pool, n, seconds, dev))
    result: dict[str, Any] = {"num_envs": n, "steps_per_s": best,
                              "setup_s": {k: v[2] for k, v in contenders.items()}}
    for env, _, _ in contenders.values():
        env.close()
    return result


def machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "gymnasium": metadata.version("gymnasium"),
            "date": datetime.now().strftime("%Y-%m-%d %H:%M"), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (rlkit's envs)")
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[64, 256, 1024, 4096, 16384, 65536, 262144, 1048576])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing window per round")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (best kept)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-compile", action="store_true", help="skip rlkit compiled")
    parser.add_argument("--out", help="write the raw results as JSON here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    info = machine(device)
    print(f"# {info}")
    header = (f"{'N':>9} | {'gym sync':>10} | {'gym vector':>10} | {'rlkit eager':>11} | "
              f"{'rlkit compiled':>14} | {'best rlkit / gym vector':>23}")
    print(header)
    print("-" * len(header))
    rows = []
    for n in args.sizes:
        r = bench_size(n, device, args.seconds, args.repeats, not args.no_compile)
        rows.append(r)
        sps = r["steps_per_s"]
        best = max(v for k, v in sps.items() if k.startswith("rlkit"))

        def cell(name: str, width: int, sps: dict[str, float] = sps) -> str:
            return f"{sps[name]:>{width}.3g}" if name in sps else f"{'-':>{width}}"

        print(f"{n:>9} | {cell('gym sync', 10)} | {cell('gym vector', 10)} | "
              f"{cell('rlkit eager', 11)} | {cell('rlkit compiled', 14)} | "
              f"{best / sps['gym vector']:>22.2f}x", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": info, "args": vars(args), "results": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
