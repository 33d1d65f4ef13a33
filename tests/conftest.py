"""Shared fixtures. Tests run single-threaded torch: faster for small nets on 2 cores."""

from __future__ import annotations

import warnings

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def plugins():
    from rlkit.plugins import Plugins

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a broken built-in must fail loudly
        return Plugins.load()


@pytest.fixture(scope="session")
def ray_instance():
    """One local Ray instance (2 CPUs) for every test that needs Ray; its workers find the
    test-support modules (``env.imports``) on their path. Skips when Ray is not installed."""
    import os
    from pathlib import Path

    ray = pytest.importorskip("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)
        path = os.environ.get("PYTHONPATH")
        tests = str(Path(__file__).resolve().parent)
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [tests, path])))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
