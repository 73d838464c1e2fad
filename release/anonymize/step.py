"""`k-anonymity` step: optimal generalization of the quasi-identifiers, then suppression of the residue."""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from release.anonymize.hierarchies import STAR, Hierarchy, encode_column
from release.anonymize.lattice import Problem
from release.anonymize.models import SensitiveColumn, SensitiveSpec
from release.context import StepContext
from release.errors import BlockedError, InternalError
from release.policy.base import ColumnSpec, ColumnType, Role, Schema, StepConfig, StrictModel
from release.registry import register_step


class Population(StrictModel):
    """The population the published records were drawn from (for journalist risk and uniqueness)."""

    sampling_fraction: float | None = Field(default=None, gt=0, le=1)
    "Share of the population in the file: a sample hides who is in it, a census does not."
    population_size: int | None = Field(default=None, ge=1)
    "Number of people in the population the records describe."

    @model_validator(mode="after")
    def _one(self) -> Population:
        if (self.sampling_fraction is None) == (self.population_size is None):
            raise ValueError("give exactly one of sampling_fraction, population_size")
        return self

    def fraction(self, n: int) -> float:
        if self.sampling_fraction is not None:
            return self.sampling_fraction
        return min(1.0, n / float(self.population_size or 1))


@register_step
class KAnonymityStep(StepConfig):
    """Generalize quasi-identifiers (least information loss) and suppress what remains unsafe."""

    type: Literal["k-anonymity"] = "k-anonymity"
    quasi_identifiers: dict[str, Hierarchy] = Field(min_length=1)
    "Each quasi-identifier with its generalization hierarchy: the columns an attacker can link on."
    k: int = Field(ge=2)
    "Every published class of identical quasi-identifiers holds at least k records."
    sensitive: dict[str, SensitiveSpec] = Field(default_factory=dict)
    "l-diversity / t-closeness per sensitive column: a class must not reveal its members' values."
    max_suppression: float = Field(default=0.0, ge=0, le=1)
    "Largest share of records that may be suppressed rather than generalized further."
    suppression: Literal["records", "cells"] = "records"
    "records: drop suppressed records; cells: publish them with every quasi-identifier set to '*'."
    loss: Literal["precision", "discernibility", "entropy"] = "precision"
    "Information-loss measure the search minimizes (entropy = non-uniform entropy)."
    weights: dict[str, float] | None = None
    "Weight of each quasi-identifier in the loss (default 1): detail the release must keep costs more to lose."
    levels: dict[str, int | Literal["max"]] | None = None
    "Generalization level per quasi-identifier fixed by hand ('max' = '*'); skips the search."
    population: Population | None = None
    "Population model for journalist risk and population uniqueness."
    risk_threshold: float = Field(default=0.2, gt=0, le=1)
    "Records whose re-identification risk exceeds this are counted in the report's share_above."

    @model_validator(mode="after")
    def _check(self) -> KAnonymityStep:
        overlap = set(self.sensitive) & set(self.quasi_identifiers)
        if overlap:
            raise ValueError(f"columns cannot be both quasi-identifier and sensitive: {sorted(overlap)}")
        if self.weights is not None and (set(self.weights) - set(self.quasi_identifiers)
                                         or any(w <= 0 for w in self.weights.values())):
            raise ValueError("weights must be positive and name only quasi-identifiers")
        if self.levels is not None and set(self.levels) != set(self.quasi_identifiers):
            raise ValueError("levels must give a level for every quasi-identifier, and only for them")
        return self

    def referenced_columns(self) -> list[str]:
        return list(self.quasi_identifiers) + list(self.sensitive)

    def schema_after(self, schema: Schema) -> Schema:
        out = dict(schema)
        for c, h in self.quasi_identifiers.items():
            old = out[c]
            if h.time is not None and old.type not in (ColumnType.datetime, ColumnType.date):
                raise ValueError(f"quasi-identifier {c!r} has a time hierarchy but is declared {old.type.value}")
            if (h.widths is not None or h.age) and old.type not in (ColumnType.integer, ColumnType.float):
                raise ValueError(f"quasi-identifier {c!r} has a numeric hierarchy but is declared {old.type.value}")
            out[c] = ColumnSpec(type=ColumnType.string, role=Role.quasi_identifier, required=False,
                                description=(old.description + "; " if old.description else "")
                                + f"generalized for {self.k}-anonymity ('*' = suppressed)")
        return out

    def describe(self) -> str:
        extra = "".join(f", {s.model if s.l else ''}{' l=' + str(s.l) if s.l else ''}"
                        f"{' t=' + str(s.t) if s.t is not None else ''} on {c}" for c, s in self.sensitive.items())
        return (f"{self.k}-anonymity on {', '.join(self.quasi_identifiers)}{extra}"
                f" (≤{self.max_suppression:.1%} suppressed, {self.loss} loss)")

    def plan_info(self, schema: Schema) -> dict[str, Any]:
        return {"quasi_identifiers": list(self.quasi_identifiers), "k": self.k,
                "sensitive": {c: s.model_dump(exclude_none=True) for c, s in self.sensitive.items()},
                "max_suppression": self.max_suppression, "search": "fixed levels" if self.levels else "lattice"}

    # ---------------------------------------------------------------------------------------------

    def build_problem(self, frame: pd.DataFrame, base: Any = None) -> Problem:
        qis = [encode_column(frame[c], h, c, base) for c, h in self.quasi_identifiers.items()]
        sens = [encode_sensitive(frame[c], c, s) for c, s in self.sensitive.items()]
        weights = [float((self.weights or {}).get(c, 1.0)) for c in self.quasi_identifiers]
        return Problem(qis, sens, self.k, self.max_suppression, self.loss, weights)

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        t0 = time.perf_counter()
        from release.anonymize.files import hierarchy_resolver

        prob = self.build_problem(frame, hierarchy_resolver(getattr(ctx, "options", {}), ctx.policy_path))
        where = f"k-anonymity on {', '.join(self.quasi_identifiers)}"
        if self.levels is not None:
            node = tuple(q.height if self.levels[q.name] == "max" else int(self.levels[q.name]) for q in prob.qis)
            bad = [q.name for q, lv in zip(prob.qis, node, strict=True) if not 0 <= lv <= q.height]
            if bad:
                from release.errors import PolicyError

                raise PolicyError(f"{where}: levels out of range for {bad}")
            ev = prob.evaluate(node)
            evaluated, size = 1, 1
            if not ev.ok:
                raise BlockedError(f"{where}: the fixed levels {dict(zip(self.quasi_identifiers, node, strict=True))}"
                                   f" need {ev.suppressed:.1%} suppression, above max_suppression"
                                   f" {self.max_suppression:.1%}; nothing was published")
        else:
            res = prob.search()
            if res.evaluation is None:
                raise BlockedError(f"{where}: no generalization satisfies k={self.k}"
                                   + (f" and the l/t models on {sorted(self.sensitive)}" if self.sensitive else "")
                                   + f" with at most {self.max_suppression:.1%} of records suppressed;"
                                   " nothing was published",
                                   details=["raise max_suppression, add hierarchy levels, or lower k/l"])
            ev, evaluated, size = res.evaluation, res.evaluated, res.lattice_size
            node = ev.node
        # Re-judge the chosen node from the bottom table so failing classes map back to records.
        table, inv = prob.rollup(node, prob.bottom)
        final = prob._judge(node, table)
        failed_bottom = final.fail[final.row_class[inv]]
        failed = failed_bottom[prob.record_row] if len(prob.record_row) else np.zeros(0, dtype=bool)
        out = frame.copy()
        for q, lv in zip(prob.qis, node, strict=True):
            lab = q.labels[lv][q.maps[lv][q.codes0]]
            out[q.name] = pd.array(lab, dtype="string")
        fallback = False
        if self.suppression == "cells" and failed.any():
            starred = out.copy()
            for q in prob.qis:
                starred.loc[failed, q.name] = STAR
            # The '*' rows form a class of their own: publish them only if it meets every model.
            if self._violations(starred):
                fallback = True
            else:
                out = starred
        if self.suppression == "records" or fallback:
            out = out.loc[~failed]
        # Verify on the result itself, as `release check` will. Suppression changes the published
        # distribution that t-closeness is measured against, so t can fail here though the search met it.
        broken = self._violations(out)
        if broken:
            if any(b.startswith("k") for b in broken):
                raise InternalError(f"{where}: result breaks {broken} (this is a bug)")
            raise BlockedError(f"{where}: after suppression the published table breaks {', '.join(broken)};"
                               " nothing was published", details=["raise t, or lower max_suppression"])
        ctx.internal.setdefault("anonymize", {})[",".join(self.quasi_identifiers)] = {
            q.name: {str(k): str(v) for k, v in zip(
                (str(x) for x in q.labels[0]), q.labels[lv][q.maps[lv][np.arange(len(q.labels[0]))]], strict=True)}
            for q, lv in zip(prob.qis, node, strict=True) if len(q.labels[0]) <= 5000}
        return out, {
            "quasi_identifiers": list(self.quasi_identifiers),
            "levels": {q.name: int(lv) for q, lv in zip(prob.qis, node, strict=True)},
            "heights": {q.name: int(q.height) for q in prob.qis},
            "loss": self.loss, "information_loss": round(float(ev.loss), 6),
            "suppressed_records": int(failed.sum()), "suppressed_share": round(float(failed.mean()) if len(failed)
                                                                               else 0.0, 6),
            "suppression": "records (local suppression fell back: the '*' class failed the models)"
            if fallback else self.suppression,
            "lattice_size": int(size), "nodes_evaluated": int(evaluated),
            "search_seconds": round(time.perf_counter() - t0, 3),
        }

    def sensitive_missing(self) -> dict[str, str]:
        return {c: h.missing for c, h in self.quasi_identifiers.items()}

    def _violations(self, table: pd.DataFrame) -> list[str]:
        """Models the table breaks, measured as `release check` measures them."""
        if not len(table):
            return []
        from release.anonymize.assess import measure

        fig = measure(table, list(self.quasi_identifiers), self.sensitive_missing(), self.sensitive, None,
                      self.risk_threshold)
        out = [f"k={self.k} (smallest class {fig['k']})"] if fig["k"] < self.k else []
        out += [f"the l/t model on {c}" for c, sp in self.sensitive.items() if not _l_ok(fig, c, sp)]
        return out


def _l_ok(fig: dict[str, Any], col: str, spec: SensitiveSpec) -> bool:
    if spec.l is not None:
        lv = fig["l"][col]
        val = lv["distinct"] if spec.model == "distinct" else lv["entropy"] if spec.model == "entropy" else None
        if val is not None and val < spec.l - 1e-9:
            return False
        if spec.model == "recursive" and not lv.get("recursive_ok", True):
            return False
    if spec.t is not None and fig["t"].get(col, 0.0) > spec.t + 1e-9:
        return False
    return True


def encode_sensitive(values: pd.Series, name: str, spec: SensitiveSpec) -> SensitiveColumn:
    """Codes in the column's order (declared, numeric, else lexicographic); missing is its own value."""
    s = values.astype(object).where(values.notna(), None)
    present = pd.Series(s.dropna().unique(), dtype=object)
    if spec.order is not None:
        order = list(spec.order) + sorted({str(v) for v in present} - set(spec.order))
        ranked = sorted(present, key=lambda v: order.index(str(v)) if str(v) in order else len(order))
    else:
        num = pd.to_numeric(present, errors="coerce")
        ranked = list(present[np.argsort(num.to_numpy(), kind="stable")]) if num.notna().all() and len(present) \
            else sorted(present, key=str)
    codes = np.asarray(pd.Categorical(s, categories=ranked).codes, dtype=np.int64) if ranked else \
        np.full(len(s), -1, dtype=np.int64)
    codes = np.where(codes < 0, len(ranked), codes)
    card = len(ranked) + (1 if (codes == len(ranked)).any() else 0)
    dist = np.bincount(codes, minlength=card).astype(float)
    return SensitiveColumn(name=name, codes=codes, card=max(card, 1), spec=spec,
                           global_dist=dist / max(dist.sum(), 1.0))


from release.anonymize import assess as _assess  # noqa: E402,F401  (registers the records assessor)
