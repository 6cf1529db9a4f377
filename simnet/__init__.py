"""Deterministic simulation of SMU networks under virtual time."""
