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
