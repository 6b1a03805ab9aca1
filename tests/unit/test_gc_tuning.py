"""``gc_tuning.settle``: the start-up heap leaves the collector's sight, thresholds rise."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pier import gc_tuning


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_settle_freezes_what_is_alive_and_raises_thresholds() -> None:
    survivor = [{"alive": i} for i in range(1000)]
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    gc_tuning.settle()
    assert gc.get_freeze_count() >= len(survivor)
    assert gc.get_threshold() == gc_tuning.GC_THRESHOLDS
    assert gc_tuning.GC_THRESHOLDS[0] > 700  # rarer young collections than CPython's
    # a full collection no longer walks the frozen objects
    assert not any(obj is survivor for obj in gc.get_objects())
