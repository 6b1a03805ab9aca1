"""The optimised cycle decides exactly as the implementation before the optimisation.

``decisions_golden.json`` holds digests of every admission (with placements), failure,
preemption and explanation that the earlier implementation produced on seeded random
snapshots (``random_snapshots.py``); a change of the hot path must reproduce them. A
deliberate change of policy regenerates the file (see its ``regenerate`` helper below).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.unit.scheduler.random_snapshots import digest, random_snapshot

from pier.scheduler.las import LasPolicy
from pier.scheduler.quota import QuotaPolicy
from pier.scheduler.types import Policy

GOLDEN = Path(__file__).with_name("decisions_golden.json")
SMALL_SEEDS = 40
BIG_SEEDS = 3

POLICIES: dict[str, Callable[[], Policy]] = {
    "quota": lambda: QuotaPolicy(),
    "quota-quiet": lambda: QuotaPolicy(explain=False),
    # Tiresias' rules, the defaults when the digests were first recorded
    "las": lambda: LasPolicy(preempt_gap=1, smallest_first=False),
    "las-quiet": lambda: LasPolicy(explain=False, preempt_gap=1, smallest_first=False),
    "las-starve": lambda: LasPolicy(
        starvation_factor=2.0, reserve_after=None, preempt_gap=1, smallest_first=False
    ),
    # today's defaults
    "las-default": lambda: LasPolicy(),
    "las-default-quiet": lambda: LasPolicy(explain=False),
    "las-fgd": lambda: LasPolicy(fragmentation_aware=True),
    "quota-fgd": lambda: QuotaPolicy(fragmentation_aware=True),
}


def digests(name: str) -> dict[str, list[str]]:
    make = POLICIES[name]
    return {
        name: [digest(make().decide(random_snapshot(s))) for s in range(SMALL_SEEDS)],
        f"{name}-big": [
            digest(make().decide(random_snapshot(s, 80, 1500))) for s in range(BIG_SEEDS)
        ],
    }


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_decisions_match_the_recorded_ones(name: str) -> None:
    recorded = json.loads(GOLDEN.read_text())
    assert digests(name) == {name: recorded[name], f"{name}-big": recorded[f"{name}-big"]}


def test_random_snapshots_exercise_every_outcome() -> None:
    outcomes: set[str] = set()
    for seed in range(SMALL_SEEDS):
        decisions = LasPolicy().decide(random_snapshot(seed))
        outcomes.update(("admit",) if decisions.admit else ())
        outcomes.update(("fail",) if decisions.fail else ())
        outcomes.update(("preempt",) if decisions.preempt else ())
        outcomes.update(info.reason for info in decisions.pending.values())
    assert outcomes >= {
        "admit",
        "fail",
        "preempt",
        "NoCapacity",
        "Held",
        "Reclaiming",
        "QuotaExceeded",
        "ProjectLimit",
        "NoMatchingNode",
        "BackoffRetry",
    }


def regenerate(names: list[str]) -> None:
    """``python -m tests.unit.scheduler.test_decisions_golden [NAME...]``: record the
    current decisions of the named policies, or of those not recorded yet (only after a
    deliberate change of policy)."""
    recorded: dict[str, list[str]] = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    for name in names or [n for n in POLICIES if n not in recorded]:
        recorded.update(digests(name))
    GOLDEN.write_text(json.dumps(recorded, indent=1) + "\n")
    sys.stdout.write(f"wrote {GOLDEN}\n")


if __name__ == "__main__":
    regenerate(sys.argv[1:])
