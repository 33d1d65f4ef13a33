"""Deterministic evaluation on separate environment instances.

Each of the ``E`` evaluation envs is given a quota of episodes (``episodes`` split as evenly as
possible), so that short episodes do not crowd out long ones in the average. The envs are
seeded afresh for every evaluation; evaluation never touches the agent's training state: an
agent with per-env state (a recurrent backbone) acts inside ``agent.separate_state(E)``, from a
fresh state that starts anew wherever an evaluation episode ends.
"""

from __future__ import annotations

import torch

from rlkit.environments import TorchVectorEnv
from rlkit.interfaces import Algorithm, EvalResult, begin_episodes, separate_state


def evaluate(
    agent: Algorithm,
    env: TorchVectorEnv,
    *,
    episodes: int,
    seed: int,
    deterministic: bool = True,
) -> EvalResult:
    """Run ``episodes`` full episodes and return their returns and lengths.

    :param agent: acts with ``explore=not deterministic``.
    :param env: a dedicated evaluation env (same-step or next-step autoreset).
    :param episodes: how many episodes to evaluate in total.
    :param seed: seeds ``env.reset``; the same seed gives the same episodes.
    """
    n = env.num_envs
    device = env.device
    quota = torch.tensor([(episodes + i) // n for i in range(n)], device=device)
    slots = int(quota.max())
    done_count = torch.zeros(n, dtype=torch.long, device=device)
    ep_return = torch.zeros(n, dtype=torch.float64, device=device)
    ep_len = torch.zeros(n, dtype=torch.long, device=device)
    # returns/lengths of each env's first ``quota`` episodes, in the order they finished
    ret_buf = torch.zeros(n, slots + 1, dtype=torch.float64, device=device)
    len_buf = torch.zeros(n, slots + 1, dtype=torch.long, device=device)
    rows = torch.arange(n, device=device)
    # On an accelerator, ask the host whether to stop only every few steps.
    check_every = 1 if device.type == "cpu" else 16
    obs = env.reset(seed=seed)
    t = 0
    with torch.no_grad(), separate_state(agent, n):
        while True:
            step = env.step(agent.act(obs, explore=not deterministic))
            finished = step.terminated | step.truncated
            if step.valid is None:
                begin_episodes(agent, finished)
                ep_return += step.reward
                ep_len += 1
            else:
                begin_episodes(agent, finished | ~step.valid)
                ep_return += step.reward * step.valid
                ep_len += step.valid
                finished &= step.valid
            # a finished episode within its env's quota goes to its slot; the rest to a spare
            slot = torch.where(finished & (done_count < quota), done_count, slots)
            ret_buf[rows, slot] = ep_return
            len_buf[rows, slot] = ep_len
            done_count += finished
            ep_return.masked_fill_(finished, 0.0)
            ep_len.masked_fill_(finished, 0)
            obs = step.obs
            t += 1
            if t % check_every == 0 and bool((done_count >= quota).all()):
                break
    keep = (torch.arange(slots, device=device) < quota[:, None]).flatten().cpu()
    returns = ret_buf[:, :slots].flatten().cpu()[keep]  # env by env, in episode order
    lengths = len_buf[:, :slots].flatten().cpu()[keep]
    return EvalResult(returns=tuple(returns.tolist()), lengths=tuple(lengths.tolist()))
