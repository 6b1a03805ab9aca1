"""Dialects: pure translations between other systems' job interfaces and the canonical JobSpec."""
