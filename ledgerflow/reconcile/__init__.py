"""Reconciliation of the regions: per-region verify over a window, and the cross-region checks."""
