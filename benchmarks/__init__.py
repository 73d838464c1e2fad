"""Benchmarks run side by side with the peers, in one process, reported as ratios."""
