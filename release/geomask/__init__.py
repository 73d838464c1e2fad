"""geomask."""
