"""Differential privacy: noisy counts and sums through OpenDP, and the budget ledger."""
