"""The Ray executor's poll schedule: a just-started replica is polled soon and then every
~3 % of its age, never past the base interval, and the young ones together never cost more
than one request every ``FAST`` seconds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pier.executors.ray_schedule import AGE_SHARE, FAST, poll_intervals

BASE = 0.1


def test_a_lone_young_replica_is_polled_fast_then_in_proportion_to_its_age() -> None:
    assert poll_intervals([0.0], BASE) == [FAST]
    assert poll_intervals([0.5], BASE) == [FAST]  # 3 % of 0.5 s is under FAST
    assert poll_intervals([1.0], BASE) == [pytest.approx(1.0 * AGE_SHARE)]
    assert poll_intervals([2.0], BASE) == [pytest.approx(2.0 * AGE_SHARE)]
    assert poll_intervals([60.0], BASE) == [BASE]  # no longer young


def test_young_replicas_share_the_fast_rate() -> None:
    assert poll_intervals([0.0, 0.0], BASE) == [2 * FAST, 2 * FAST]
    # Four just started: each at 4 x FAST = the base interval, as if none were young.
    assert poll_intervals([0.0] * 4, BASE) == [BASE] * 4
    # A long-running one does not slow the young one down, nor is it polled faster.
    assert poll_intervals([0.0, 600.0], BASE) == [FAST, BASE]


@given(
    ages=st.lists(st.floats(min_value=0, max_value=1e5), min_size=1, max_size=16),
    base=st.sampled_from([0.1, 0.25]),
)
def test_the_extra_requests_stay_bounded(ages: list[float], base: float) -> None:
    intervals = poll_intervals(ages, base)
    assert all(FAST <= i <= base for i in intervals)
    young = [i for age, i in zip(ages, intervals, strict=True) if age * AGE_SHARE < base]
    # The young ones cost at most one request per FAST (or what the base interval costs
    # anyway, when many are young); the rest one per base interval.
    assert sum(1 / i for i in young) <= max(1 / FAST, len(young) / base) + 1e-9
    assert sum(1 / i for i in intervals) <= 1 / FAST + len(ages) / base + 1e-9
    # A replica's end is seen within AGE_SHARE of its age (or FAST, or the shared rate).
    for age, interval in zip(ages, intervals, strict=True):
        assert interval <= max(FAST * len(young), age * AGE_SHARE, FAST)
