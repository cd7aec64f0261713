"""Benchmarks (not tests): each prints its figures as one JSON line and appends it to bench/results/."""
