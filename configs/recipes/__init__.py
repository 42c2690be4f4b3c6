"""Helpers shared by several configs (not runnable configs themselves, so they live outside configs/*.py)."""
