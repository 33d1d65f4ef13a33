"""A batch of warehouses that reorder stock every day: a numpy simulation with its own clock.

Each warehouse sells one product. Every day, in this order:

1. its controller orders a quantity (:meth:`InventorySimulation.run` asks the controller);
2. the order placed ``lead_time`` days ago arrives and joins the stock, up to the
   warehouse's ``capacity``; what does not fit is sent back;
3. customers demand ``Poisson(mean)`` units, where the mean follows the season:
   ``base * (1 + amplitude * sin(2 pi (day + phase) / season_days))``, each warehouse with
   its own base demand and phase;
4. what the stock covers is sold; the rest is lost;
5. the day costs ``holding_cost`` per unit left in stock, ``lost_sale_cost`` per unit not
   sold, ``return_cost`` per unit sent back and ``order_cost`` per unit ordered.

The season is known in advance (:meth:`InventorySimulation.forecast` gives the mean demand of
the coming days), the demand itself is not. Demand is drawn from a generator of its own, so
two simulations with the same seed see the same customers whatever their controllers order:
controllers are compared on the same days.

This is not a gymnasium env and has no reset: the simulation owns the loop
(:meth:`InventorySimulation.run`) and calls a :class:`Controller` for the orders and after each
day. :mod:`rlkit_envs.simulators.inventory_example` plugs an rlkit agent in there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

__all__ = ["Controller", "DayReport", "InventoryConfig", "InventorySimulation"]


@dataclass(frozen=True, kw_only=True)
class InventoryConfig:
    """The warehouses and their costs."""

    num_warehouses: int = 64
    """Warehouses simulated side by side (one batch)."""
    lead_time: int = 2
    """Days between placing an order and its arrival (at least 1)."""
    base_demand: tuple[float, float] = (4.0, 8.0)
    """Range of the warehouses' mean daily demand over a season (drawn uniformly)."""
    amplitude: float = 0.5
    """Seasonal swing of the mean demand, as a fraction of the base (below 1)."""
    season_days: int = 28
    """Length of a season (one period of the demand's swing), in days."""
    holding_cost: float = 1.0
    """Cost per unit in stock at the end of a day."""
    lost_sale_cost: float = 10.0
    """Cost per unit demanded and not in stock (lost margin and goodwill)."""
    order_cost: float = 0.0
    """Cost per unit ordered."""
    capacity: int = 60
    """Units a warehouse can hold; a delivery beyond it is sent back."""
    return_cost: float = 2.0
    """Cost per unit sent back for lack of space."""
    max_order: int = 20
    """The most a warehouse can order per day; larger orders are cut to it."""

    def __post_init__(self) -> None:
        low, high = self.base_demand
        if self.num_warehouses < 1 or self.lead_time < 1 or self.season_days < 1:
            raise ValueError("InventoryConfig: num_warehouses, lead_time and season_days must "
                             "be at least 1.")
        if not 0 < low <= high or not 0 <= self.amplitude < 1 or self.max_order < 0 or (
                self.capacity < 1):
            raise ValueError("InventoryConfig: base_demand must be (low, high) with 0 < low <= "
                             "high, amplitude in [0, 1), max_order >= 0 and capacity >= 1.")


class DayReport(NamedTuple):
    """What happened on one day, per warehouse (arrays of shape ``(num_warehouses,)``)."""

    day: int
    """The day that just ended (0 for the first)."""
    ordered: np.ndarray[Any, Any]
    """Units ordered this morning (after the cut to ``max_order``)."""
    demand: np.ndarray[Any, Any]
    """Units customers asked for."""
    sold: np.ndarray[Any, Any]
    """Units sold."""
    lost: np.ndarray[Any, Any]
    """Units demanded but not in stock."""
    returned: np.ndarray[Any, Any]
    """Units delivered and sent back for lack of space."""
    stock: np.ndarray[Any, Any]
    """Units left in stock tonight."""
    cost: np.ndarray[Any, Any]
    """The day's cost: holding, lost sales, returns and orders."""


class Controller(Protocol):
    """Who decides the orders: asked every morning, told every evening."""

    def decide(self, sim: InventorySimulation) -> np.ndarray[Any, Any]:
        """Units to order today, ``(num_warehouses,)`` whole numbers."""
        ...

    def day_done(self, sim: InventorySimulation, report: DayReport) -> None:
        """The day is over (``sim`` already shows the next morning)."""
        ...


class InventorySimulation:
    """Warehouses that reorder stock; see the module docstring.

    :param config: the warehouses and costs.
    :param seed: draws the warehouses (base demand, phase) and, from a generator of its own,
        the customers' demand.
    """

    def __init__(self, config: InventoryConfig | None = None, *, seed: int = 0) -> None:
        self.config = cfg = config or InventoryConfig()
        setup = np.random.default_rng([seed, 0])
        self._demand_rng = np.random.default_rng([seed, 1])
        n = cfg.num_warehouses
        self.base_demand = setup.uniform(*cfg.base_demand, size=n)
        """Each warehouse's mean daily demand over a season."""
        self.phase = setup.uniform(0.0, cfg.season_days, size=n)
        """Each warehouse's position in the season on day 0, in days."""
        self.day = 0
        """The clock: today's number, from 0."""
        self.stock = np.round(2.0 * self.base_demand).astype(np.int64)
        """Units in stock this morning, before today's delivery."""
        self.pipeline = np.tile(np.round(self.base_demand).astype(np.int64)[:, None],
                                (1, cfg.lead_time))
        """Units on order, ``(num_warehouses, lead_time)``: column ``k`` arrives in ``k``
        days (column 0 today)."""

    @property
    def num_warehouses(self) -> int:
        return self.config.num_warehouses

    def mean_demand(self, day: int) -> np.ndarray[Any, Any]:
        """Each warehouse's mean demand on ``day`` (the seasonal signal)."""
        cfg = self.config
        angle = 2.0 * np.pi * (day + self.phase) / cfg.season_days
        return self.base_demand * (1.0 + cfg.amplitude * np.sin(angle))

    def forecast(self, days: int) -> np.ndarray[Any, Any]:
        """The mean demand of today and the ``days - 1`` days after, ``(num_warehouses,
        days)``."""
        return np.stack([self.mean_demand(self.day + k) for k in range(days)], axis=1)

    def position(self) -> np.ndarray[Any, Any]:
        """Each warehouse's inventory position: in stock plus on order."""
        return self.stock + self.pipeline.sum(axis=1)

    def step(self, orders: np.ndarray[Any, Any]) -> DayReport:
        """Run today with these orders (``(num_warehouses,)``, cut to ``[0, max_order]``)
        and move the clock to tomorrow."""
        cfg = self.config
        ordered = np.clip(np.asarray(orders).astype(np.int64).reshape(-1), 0, cfg.max_order)
        if ordered.shape != (cfg.num_warehouses,):
            raise ValueError(f"InventorySimulation.step: expected {cfg.num_warehouses} orders, "
                             f"got {ordered.shape[0]}.")
        arrived = self.stock + self.pipeline[:, 0]
        stock = np.minimum(arrived, cfg.capacity)
        returned = arrived - stock
        self.pipeline = np.concatenate([self.pipeline[:, 1:], ordered[:, None]], axis=1)
        demand = self._demand_rng.poisson(self.mean_demand(self.day))
        sold = np.minimum(stock, demand)
        lost = demand - sold
        self.stock = stock - sold
        cost = (cfg.holding_cost * self.stock + cfg.lost_sale_cost * lost
                + cfg.return_cost * returned + cfg.order_cost * ordered)
        report = DayReport(day=self.day, ordered=ordered, demand=demand, sold=sold, lost=lost,
                           returned=returned, stock=self.stock.copy(), cost=cost)
        self.day += 1
        return report

    def run(self, days: int, controller: Controller) -> np.ndarray[Any, Any]:
        """Run ``days`` days with ``controller`` deciding the orders; the daily costs,
        ``(days, num_warehouses)``."""
        costs = np.empty((days, self.num_warehouses))
        for i in range(days):
            report = self.step(controller.decide(self))
            costs[i] = report.cost
            controller.day_done(self, report)
        return costs
