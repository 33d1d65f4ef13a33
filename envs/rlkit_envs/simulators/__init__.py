"""Simulators that are not gymnasium envs: they own their loop and their clock, and drive an
rlkit agent through the embedding API (:class:`rlkit.Agent`, :class:`rlkit.Session`).

* :mod:`rlkit_envs.simulators.inventory`: a batch of warehouses with lead times, seasonal
  demand, lost sales and holding costs (numpy);
* :mod:`rlkit_envs.simulators.inventory_example`: an rlkit agent that learns to reorder while
  the simulation runs, compared with a base-stock policy (``python -m
  rlkit_envs.simulators.inventory_example``).
"""
