"""Output kinds of the core (record-level files); DP and protected tables live in their packages."""
