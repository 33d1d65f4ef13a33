"""Does ``torch.compile`` of one rollout step (policy forward + env step) pay off on the CPU?

Times one batched rollout step -- a 64x64 tanh MLP picks greedy actions for N CartPoles, the
envs step -- three ways, in the same run:

* ``gymnasium``: the same policy on gymnasium's numpy-vectorized CartPole (``make_vec(...,
  vectorization_mode="vector_entry_point")``), observations converted to tensors and actions
  back, as any torch agent on a numpy env must (the reference);
* ``rlkit eager``: the policy and rlkit's pure ``cartpole_step`` on tensors;
* ``rlkit compiled``: the same function through ``torch.compile(dynamic=False)``; the time of
  the first (compiling) call is printed separately.

    python benchmarks/compile_rollout_step.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import rlkit_envs
import torch
from rlkit_envs.cartpole import cartpole_step
from torch import nn


def steps_per_second(fn: Callable[[], object], n: int, calls: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return calls * n / (time.perf_counter() - start)


def main() -> None:
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                           nn.Linear(64, 2))

    def rollout_step(state: torch.Tensor, params: object) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            action = policy(state).argmax(-1)
        return cartpole_step(state, action, params)

    compiled = torch.compile(rollout_step, dynamic=False)
    print(f"{'threads':>7} | {'N':>6} | {'gymnasium':>10} | {'rlkit eager':>11} | "
          f"{'rlkit compiled':>14} | compiled/eager | compiled/gym | compile (s)")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for n in (1024, 65536):
            env = rlkit_envs.CartPole(n)
            env.reset(seed=0)
            state, params = env.state, env.params
            reference = gym.make_vec("CartPole-v1", num_envs=n,
                                     vectorization_mode="vector_entry_point")
            obs, _ = reference.reset(seed=0)

            def gym_step(reference: gym.vector.VectorEnv = reference) -> None:
                nonlocal obs
                with torch.no_grad():
                    action = policy(torch.as_tensor(obs)).argmax(-1).numpy()
                obs, *_ = reference.step(action)

            start = time.perf_counter()
            compiled(state, params)
            compile_s = time.perf_counter() - start
            calls = 200 if n <= 1024 else 40
            sps = {
                "gym": steps_per_second(gym_step, n, calls),
                "eager": steps_per_second(
                    lambda s=state, p=params: rollout_step(s, p), n, calls),
                "compiled": steps_per_second(
                    lambda s=state, p=params: compiled(s, p), n, calls),
            }
            print(f"{threads:>7} | {n:>6} | {sps['gym']:>10.3g} | {sps['eager']:>11.3g} | "
                  f"{sps['compiled']:>14.3g} | {sps['compiled'] / sps['eager']:>13.2f}x | "
                  f"{sps['compiled'] / sps['gym']:>11.2f}x | {compile_s:>10.1f}", flush=True)
            reference.close()


if __name__ == "__main__":
    main()
