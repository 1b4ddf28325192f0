"""Benchmarks: each script measures us side by side with the raw baseline in one run.

Run one: `python -m benchmarks.messaging`; run all: `python -m benchmarks` (writes
benchmarks/results/report.md and .json).
"""
