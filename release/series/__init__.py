"""Re-releases: keyed per-record masks, predecessors found by source, joint checks across versions."""
