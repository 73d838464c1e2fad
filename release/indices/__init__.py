"""Multiple benchmarking: disproportionality and disparity indices from published tables (the `indices` output)."""
