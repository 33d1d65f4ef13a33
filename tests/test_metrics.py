"""Episode statistics: the CPU path and the device path (no per-step host reads) agree."""

from __future__ import annotations

import torch

from rlkit.metrics import EpisodeStats


def drive(stats: EpisodeStats, steps: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        reward = torch.rand(6, generator=g)
        terminated = torch.rand(6, generator=g) < 0.1
        truncated = torch.rand(6, generator=g) < 0.05
        stats.record(reward, terminated, truncated, None)


def test_device_path_reports_the_same_episodes_as_the_cpu_path():
    cpu = EpisodeStats(6, torch.device("cpu"))
    device_like = EpisodeStats(6, torch.device("cpu"))
    device_like.sync_free = True  # the accelerator path, run on the CPU
    for seed in range(3):
        drive(cpu, 50, seed)
        drive(device_like, 50, seed)
        (m1, f1), (m2, f2) = cpu.drain(), device_like.drain()
        assert m1.keys() == m2.keys() and all(abs(m1[k] - m2[k]) < 1e-9 for k in m1)
        assert sorted(f1) == sorted(f2) and len(f1) == m1["rollout/episodes"]


def test_the_ring_keeps_the_most_recent_returns_when_many_episodes_finish():
    stats = EpisodeStats(4, torch.device("cpu"))
    stats.sync_free = True
    stats.RING = 5
    stats._ring = torch.zeros(6, dtype=torch.float64)
    done = torch.ones(4, dtype=torch.bool)
    for step in range(3):  # 12 one-step episodes with returns step*10 + env
        stats.record(torch.arange(4.0) + 10 * step, done, ~done, None)
    metrics, finished = stats.drain()
    assert metrics["rollout/episodes"] == 12
    assert sorted(finished) == [13.0, 20.0, 21.0, 22.0, 23.0]
