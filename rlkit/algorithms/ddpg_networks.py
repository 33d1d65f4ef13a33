"""The networks of DDPG and TD3: a deterministic actor ``mu(s)`` and a Q critic ``Q(s, a)``,
each on a backbone of its own, and the unroll of a recurrent backbone over replayed sequences.

The critic takes the action beside the observation, into its backbone (flat Box observations,
as in the papers), or beside the backbone's features (images through ``cnn``, and recurrent
backbones, whose cores must read observations only so that their state advances while
acting). With a recurrent backbone the heads apply to the core's outputs, one per step:
:meth:`Actor.action` and :meth:`Critic.value` take features of any leading shape, ``(B, H)``
or ``(T, B, H)``, and :func:`unroll` produces them for replayed sequences (see
:mod:`rlkit.algorithms.ddpg`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlkit.buffers import ReplaySequences

__all__ = ["Actor", "Critic", "unroll"]


class Actor(nn.Module):
    """``mu(s)`` in ``[-1, 1]``: a backbone, a linear layer, ``tanh``."""

    def __init__(self, backbone: nn.Module, action_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(_output_dim(backbone), action_dim)

    def forward(self, obs: Tensor) -> Tensor:
        return self.action(self.backbone(obs))

    def action(self, features: Tensor) -> Tensor:
        """``mu`` from the backbone's features ``(..., output_dim)`` (a recurrent core's
        outputs, one per step)."""
        return torch.tanh(self.head(features))


class Critic(nn.Module):
    """``Q(s, a)`` with the action beside the observation or beside the backbone's features.

    :param make_backbone: builds the backbone for an observation space.
    :param observation_space: one env's observation space.
    :param action_dim: size of the flat action.
    :param joint: True: the backbone reads ``[obs, action]`` (flat Box observations).
    :param head_sizes: hidden layers after the backbone when the action joins its features.
    """

    def __init__(self, make_backbone: Callable[[gym.Space[Any]], nn.Module],
                 observation_space: gym.Space[Any], action_dim: int, *, joint: bool,
                 head_sizes: list[int]) -> None:
        super().__init__()
        self.joint = joint
        if joint:
            assert isinstance(observation_space, gym.spaces.Box)
            low = np.concatenate([observation_space.low.reshape(-1),
                                  -np.ones(action_dim, dtype=np.float32)])
            high = np.concatenate([observation_space.high.reshape(-1),
                                   np.ones(action_dim, dtype=np.float32)])
            self.backbone = make_backbone(gym.spaces.Box(low, high, dtype=np.float32))
            width = _output_dim(self.backbone)
        else:
            self.backbone = make_backbone(observation_space)
            width = _output_dim(self.backbone) + action_dim
        layers: list[nn.Module] = []
        for hidden in [] if joint else head_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*layers)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        """``Q(s, a)`` of shape ``(B,)``."""
        if self.joint:
            x = self.backbone(torch.cat((obs.reshape(obs.shape[0], -1).float(), action), 1))
        else:
            x = torch.cat((self.backbone(obs), action), dim=1)
        return self.head(x).squeeze(-1)

    def value(self, features: Tensor, action: Tensor) -> Tensor:
        """``Q`` from the backbone's features ``(..., output_dim)`` and actions ``(...,
        action_dim)`` (the action beside the features), shaped like the leading dims."""
        return self.head(torch.cat((features, action), dim=-1)).squeeze(-1)


def unroll(body: Any, seq: ReplaySequences, state: Tensor, burn_in: int,
           with_next: bool) -> tuple[Tensor, Tensor | None]:
    """A recurrent backbone's features over replayed sequences.

    Starts from ``state`` ``(B, *core_state)``, runs the first ``burn_in`` steps without
    gradient, then the rest, resetting the state where ``seq.starts`` says. Returns the
    features ``(T, B, H)`` of the ``T`` training steps and, with ``with_next`` (no gradient),
    those of the true next observations ``o'_t`` under ``h_t``, the state after step ``t``
    and before any reset: the next step's features where the next step continues from
    ``h_t``; computed from ``h_t`` where it does not (the state is reset after ``t`` and the
    episode was not terminated) or the sequence ends.
    """
    if burn_in:
        with torch.no_grad():
            _, state = body.forward_sequence(seq.obs[:burn_in], state, seq.starts[:burn_in])
    obs, starts = seq.obs[burn_in:], seq.starts[burn_in:]
    if not with_next:
        return body.forward_sequence(obs, state, starts)[0], None
    steps = obs.shape[0]
    # the steps whose next observation the next step does not continue from
    cut = starts[1:] & ~seq.terminated[burn_in:-1]
    ends = [*torch.nonzero(cut.any(dim=1)).flatten().tolist(), steps - 1]
    parts, boots, begin = [], [], 0
    for end in ends:
        features, state = body.forward_sequence(obs[begin:end + 1], state, starts[begin:end + 1])
        parts.append(features)
        boots.append(body(seq.next_obs[burn_in + end], state)[0])
        begin = end + 1
    features = torch.cat(parts) if len(parts) > 1 else parts[0]
    following = torch.cat((features[1:], boots[-1].unsqueeze(0)))
    for end, boot in zip(ends[:-1], boots[:-1]):
        following[end] = torch.where(cut[end].unsqueeze(-1), boot, following[end])
    return features, following


def _output_dim(backbone: nn.Module) -> int:
    """A backbone's ``output_dim``, checked to be an int."""
    width = backbone.output_dim
    if not isinstance(width, int):
        raise TypeError(f"backbone {type(backbone).__name__} must have an int output_dim")
    return width
