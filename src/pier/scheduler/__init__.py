"""Scheduling: a pure core (snapshot in, decisions out) and its policies."""

from pier.scheduler.fifo import FifoPolicy
from pier.scheduler.las import LasPolicy
from pier.scheduler.quota import QuotaPolicy
from pier.scheduler.types import Decisions, Policy, Snapshot

__all__ = ["Decisions", "FifoPolicy", "LasPolicy", "Policy", "QuotaPolicy", "Snapshot"]
