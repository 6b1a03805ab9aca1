"""Reproducible benchmarks of pier (and of Slurm beside it); see ``benchmarks/README.md``."""
