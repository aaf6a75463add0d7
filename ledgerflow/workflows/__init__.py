"""Workflows: deterministic orchestration only, no I/O (see workflows/transfer.py)."""
