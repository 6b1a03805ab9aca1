"""Fair shares of the cluster's GPUs: deserved quotas first, the rest by weight.

Two levels, as Run:AI departments and Kueue cohorts have them. First the cluster is divided
among *groups* (a department, or a project that belongs to none), then each group's share
among its projects. At each level an entry first gets its deserved quota, capped by its
demand; what is left is water-filled among entries that still want more, in proportion to
their weight, none above its demand. Idle quota of a department's project therefore goes to
the department's other projects first, and only then to the rest of the cluster.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["ShareRequest", "fair_shares", "water_fill"]

EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class ShareRequest:
    name: str
    group: str | None
    deserved: float
    weight: float
    demand: float
    """What the project would use if nothing held it back: running plus pending work,
    capped by its hard limit."""


def water_fill(
    capacity: float, entries: Iterable[tuple[str, float, float, float]]
) -> dict[str, float]:
    """Shares of ``capacity`` for ``(name, deserved, weight, demand)`` entries."""
    items = list(entries)
    share = {name: min(demand, deserved) for name, deserved, _, demand in items}
    total = sum(share.values())
    if total >= capacity - EPSILON:
        # Quotas promised more than there is: everyone gets the same fraction of theirs.
        scale = capacity / total if total > EPSILON else 0.0
        return {name: s * scale for name, s in share.items()}
    left = capacity - total
    wanting = sorted(
        (
            ((demand - share[name]) / weight, name, weight, demand - share[name])
            for name, _, weight, demand in items
            if weight > EPSILON and demand - share[name] > EPSILON
        ),
    )
    weights = sum(w for _, _, w, _ in wanting)
    for _, name, weight, want in wanting:
        give = min(want, left * weight / weights)
        share[name] += give
        left -= give
        weights -= weight
    return share


def fair_shares(capacity: float, requests: Iterable[ShareRequest]) -> Mapping[str, float]:
    """Each project's fair share of ``capacity`` GPUs, department by department."""
    groups: dict[str, list[ShareRequest]] = defaultdict(list)
    for r in requests:
        groups[r.group if r.group is not None else f"project:{r.name}"].append(r)
    group_share = water_fill(
        capacity,
        (
            (
                name,
                sum(r.deserved for r in members),
                sum(r.weight for r in members),
                sum(r.demand for r in members),
            )
            for name, members in groups.items()
        ),
    )
    result: dict[str, float] = {}
    for name, members in groups.items():
        result.update(
            water_fill(
                group_share[name], ((r.name, r.deserved, r.weight, r.demand) for r in members)
            )
        )
    return result
