"""How often the Ray executor polls the Ray jobs it watches (pure; see
:mod:`pier.executors.ray`): each poll of one replica is one request to the dashboard."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["AGE_SHARE", "FAST", "FEW", "LIST_THRESHOLD", "poll_intervals"]

FEW = 4  # watched replicas polled every poll_interval
LIST_THRESHOLD = 16  # more watched jobs than this: one list_jobs instead of one GET each
FAST = 0.025  # the quickest a young replica is polled (shared by all young ones)
AGE_SHARE = 1 / 32  # a young replica is polled every this share of its age


def poll_intervals(ages: Sequence[float], base: float) -> list[float]:
    """How often to poll each watched replica, given how long each has been watched.

    A replica is young while ``AGE_SHARE`` of its age is under ``base``: it is polled every
    ``max(FAST, AGE_SHARE * age)`` (its end is seen within ~3 % of its run time), but no
    more often than every ``FAST * young`` seconds, so the young ones together make at most
    one request every ``FAST``. The others are polled every ``base``."""
    young = sum(1 for age in ages if age * AGE_SHARE < base)
    return [min(base, max(FAST, age * AGE_SHARE, FAST * young)) for age in ages]
