"""Executors: where placed replicas run (local processes; Ray and Kubernetes later)."""

from pier.executors.gpus import detect_local_node
from pier.executors.local import LocalExecutor

__all__ = ["LocalExecutor", "detect_local_node"]
