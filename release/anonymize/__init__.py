"""k-anonymity, l-diversity, t-closeness and re-identification risk for record-level outputs."""
