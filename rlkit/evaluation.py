"""Deterministic evaluation on separate environment instances.

Each of the ``E`` evaluation envs is given a quota of episodes (``episodes`` split as evenly as
possible), so that short episodes do not crowd out long ones in the average. The envs are
seeded afresh for every evaluation; evaluation never touches the agent's training state.
"""

from __future__ import annotations

import torch

from rlkit.environments import TorchVectorEnv
from rlkit.interfaces import Algorithm, EvalResult


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
    quota = torch.tensor([(episodes + i) // n for i in range(n)])
    done_count = torch.zeros(n, dtype=torch.long)
    ep_return = torch.zeros(n, dtype=torch.float64)
    ep_len = torch.zeros(n, dtype=torch.long)
    returns: list[float] = []
    lengths: list[int] = []
    obs = env.reset(seed=seed)
    with torch.no_grad():
        while bool((done_count < quota).any()):
            step = env.step(agent.act(obs, explore=not deterministic))
            valid = torch.ones(n, dtype=torch.bool) if step.valid is None else step.valid.cpu()
            ep_return += step.reward.cpu().double() * valid
            ep_len += valid.long()
            finished = (step.terminated | step.truncated).cpu() & valid
            for i in torch.nonzero(finished & (done_count < quota)).flatten().tolist():
                returns.append(float(ep_return[i]))
                lengths.append(int(ep_len[i]))
            done_count += finished.long()
            ep_return[finished] = 0.0
            ep_len[finished] = 0
            obs = step.obs
    return EvalResult(returns=tuple(returns), lengths=tuple(lengths))
