"""Scan published columns for identifier patterns (emails, phone numbers, postal codes, street addresses)."""

from __future__ import annotations

import pandas as pd

PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "phone": r"(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b",
    "postal_code": r"\b[A-Za-z]\d[A-Za-z][ -]?\d[A-Za-z]\d\b",
    "street_address": r"\b\d{1,5}\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*\s+(?:St|Street|Ave|Avenue|Rd|Road|Blvd|Dr|Drive|Cres|Crescent|Lane|Ln|Way|Court|Ct|Pl|Place)\b",
}
_SAMPLE = 200_000


def scan_frame(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per column, the number of values matching each identifier pattern (values never returned)."""
    hits: dict[str, dict[str, int]] = {}
    for col in frame.columns:
        s = frame[col]
        if not (pd.api.types.is_string_dtype(s) or s.dtype == object):
            continue
        s = s.dropna().astype("string")
        if len(s) > _SAMPLE:
            s = s.iloc[:_SAMPLE]
        # Distinct values only: a column of 1M rows and 80 categories is 80 regex calls.
        u = pd.Series(s.unique(), dtype="string")
        for name, pat in PATTERNS.items():
            n = int(u.str.contains(pat, regex=True).sum())
            if n:
                hits.setdefault(str(col), {})[name] = n
    return hits
