"""Benchmarks: scripts that measure, print figures and write JSON (+ PNG) to benchmarks/results/."""
