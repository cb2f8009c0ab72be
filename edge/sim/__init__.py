"""Simulators that run real edge agents (a whole county of them)."""
