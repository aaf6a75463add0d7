"""Benchmarks: report numbers, assert nothing (timings are not tests)."""
