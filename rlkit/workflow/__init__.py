"""Workflows around training: choosing an algorithm for an environment (``rlkit recommend``,
:mod:`rlkit.workflow.recommend`), comparing runs and tuning hyperparameters."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1 (``--seeds``, ``--jobs``, ...)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
