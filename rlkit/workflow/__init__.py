"""Workflows around training: choosing an algorithm for an environment (``rlkit recommend``,
:mod:`rlkit.workflow.recommend`), comparing runs and tuning hyperparameters."""
