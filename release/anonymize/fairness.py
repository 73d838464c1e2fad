"""Who bears the suppression: per group (each quasi-identifier value, each value of a protected column)
the share of records suppressed and the share published at full detail, group caps, and their bands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from release.policy.base import StrictModel

BANDS = ((0.01, "< 1%"), (0.05, "1–5%"), (0.20, "5–20%"), (float("inf"), "> 20%"))
"Public bands of a group's share: they show a disparity without revealing how many records of a rare value there were."


def band(share: float) -> str:
    for hi, name in BANDS:
        if share < hi:
            return name
    return BANDS[-1][1]


class GroupCap(StrictModel):
    """Caps on the share of a group's records that may be suppressed (a search constraint, not a report)."""

    share: float | None = Field(default=None, ge=0, le=1)
    "Largest share of any capped group's records that may be suppressed (e.g. 0.1)."
    ratio: float | None = Field(default=None, ge=1)
    "Largest ratio of a group's suppressed share to the overall suppressed share (e.g. 3)."
    columns: tuple[str, ...] | None = None
    "Columns whose values are capped groups (default: the protected columns, else every quasi-identifier)."
    min_records: int = Field(default=1, ge=1)
    "Groups with fewer records are reported but not capped (a 2-record group cannot lose 'less than 10%')."

    @model_validator(mode="after")
    def _one(self) -> GroupCap:
        if self.share is None and self.ratio is None:
            raise ValueError("give share, ratio or both")
        return self


@dataclass
class GroupColumn:
    """One column's groups as integer codes per record (or per weighted row), with the value labels."""

    name: str
    codes: np.ndarray
    labels: list[str]
    capped: bool


def group_shares(codes: np.ndarray, card: int, w: np.ndarray, suppressed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Records per group and the share of them suppressed (weights w per row, suppressed per row)."""
    tot = np.bincount(codes, weights=w, minlength=card)
    sup = np.bincount(codes, weights=np.where(suppressed, w, 0.0), minlength=card)
    return tot, np.divide(sup, tot, out=np.zeros(card), where=tot > 0)


def caps_hold(cap: GroupCap, tot: np.ndarray, share: np.ndarray, overall: float, monotone_only: bool = False) -> bool:
    """Whether every capped group of one column is within the cap.

    The share cap on the suppression by k / distinct-l is monotone (moving up the lattice only merges
    classes, so a group's suppressed records can only shrink), so it may prune the search; the ratio
    cap is not (the overall share shrinks too) and is checked only on the node itself.
    """
    big = tot >= cap.min_records
    if cap.share is not None and bool((share[big] > cap.share + 1e-12).any()):
        return False
    if monotone_only or cap.ratio is None:
        return True
    return not bool((share[big] > cap.ratio * overall + 1e-12).any())


def fairness_figures(groups: list[GroupColumn], suppressed: np.ndarray, full: np.ndarray, cap: GroupCap | None,
                     public_values: dict[str, set[str]], weights: np.ndarray | None = None
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(public figures, internal figures) for the records of one k step.

    `suppressed` and `full` are per record: suppressed, and published with every quasi-identifier value
    unchanged. The internal figures are exact; the public ones are bands and whether each cap held, and
    name only values the public already knows (declared categories or values seen in the published
    file): a fully suppressed rare value is not named.
    """
    n = len(suppressed)
    # Rows may stand for several records each (a frequency table): `weights` records per row.
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    overall = float(w[suppressed].sum() / w.sum()) if n and w.sum() else 0.0
    pub_rows: list[dict[str, Any]] = []
    internal: dict[str, Any] = {"overall_suppressed_share": round(overall, 6), "columns": {}}
    worst: tuple[float, str, str] | None = None
    all_held = True
    for g in groups:
        card = len(g.labels)
        tot, share = group_shares(g.codes, card, w, suppressed)
        kept_full = np.bincount(g.codes, weights=np.where(full & ~suppressed, w, 0.0), minlength=card)
        full_share = np.divide(kept_full, tot, out=np.zeros(card), where=tot > 0)
        rows_int = {}
        hidden: list[tuple[str, str, str]] = []
        # Values in sorted order, not in the order the records first showed them: the figures must not
        # depend on input order (or on how a batch engine cut it).
        for i in sorted(range(card), key=lambda j: str(g.labels[j])):
            value = g.labels[i]
            if tot[i] == 0:
                continue
            held = None
            if g.capped and cap is not None:
                held = tot[i] < cap.min_records or caps_hold(cap, tot[i:i + 1], share[i:i + 1], overall)
                all_held &= held
            rows_int[value] = {"records": int(tot[i]), "suppressed": int(round(share[i] * tot[i])),
                               "suppressed_share": round(float(share[i]), 6),
                               "full_detail_share": round(float(full_share[i]), 6),
                               **({"cap_held": bool(held)} if held is not None else {})}
            cap_txt = "not capped" if held is None else "held" if held else "BROKEN"
            if value in public_values.get(g.name, set()):
                pub_rows.append({"column": g.name, "value": value, "suppressed": band(float(share[i])),
                                 "full detail": band(float(full_share[i])), "cap": cap_txt})
            else:
                hidden.append((band(float(share[i])), band(float(full_share[i])), cap_txt))
            if worst is None or share[i] > worst[0]:
                worst = (float(share[i]), g.name, value if value in public_values.get(g.name, set()) else "")
        if hidden:
            # Values the public does not know stay unnamed: one row with the worst band among them.
            order = [b for _, b in BANDS]
            pub_rows.append({"column": g.name, "value": f"other values ({len(hidden)})",
                             "suppressed": max((h[0] for h in hidden), key=order.index),
                             "full detail": min((h[1] for h in hidden), key=order.index),
                             "cap": "BROKEN" if any(h[2] == "BROKEN" for h in hidden) else
                             "held" if any(h[2] == "held" for h in hidden) else "not capped"})
        internal["columns"][g.name] = rows_int
    public: dict[str, Any] = {"overall_suppressed": band(overall), "groups": pub_rows,
                              "bands": [b for _, b in BANDS]}
    if cap is not None:
        public["cap"] = cap.model_dump(exclude_none=True)
        public["caps_held"] = bool(all_held)
    if worst is not None and worst[0] >= 0.05 and worst[0] > 2 * overall:
        who = f"value {worst[2]!r} of {worst[1]}" if worst[2] else f"a value of {worst[1]}"
        public["statement"] = (f"Suppression is uneven: {who} lost {band(worst[0])} of its records against"
                               f" {band(overall)} overall; analyses comparing groups are biased by it.")
    return public, internal
