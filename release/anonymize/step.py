"""`k-anonymity` step: optimal generalization of the quasi-identifiers, then suppression of the residue."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from release.anonymize.fairness import GroupCap, GroupColumn, fairness_figures
from release.anonymize.hierarchies import STAR, Hierarchy, encode_column
from release.anonymize.lattice import Problem
from release.anonymize.models import SensitiveColumn, SensitiveSpec
from release.context import StepContext
from release.errors import BlockedError, InternalError
from release.policy.base import ColumnSpec, ColumnType, Role, Schema, StepConfig, StrictModel
from release.registry import register_step

COUNT = "_count"
"Frequency-table column: the records of the row's combination."
FIRST = "_first_"
"Prefix of a frequency-table column a runner adds per time quasi-identifier: the row's earliest raw time."


@dataclass(frozen=True)
class Recoding:
    """The k-anonymity step's decision on a frequency table, for any runner to apply to its records: per
    table row, the published label of each quasi-identifier (None: missing) and whether it is removed."""

    quasi_identifiers: tuple[str, ...]
    labels: dict[str, np.ndarray]
    "quasi-identifier -> label per frequency-table row (object array)"
    drop: np.ndarray
    "per frequency-table row: its records are suppressed (removed)"

    def apply(self, frame: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        """The records recoded; `rows`: each record's frequency-table row (frequency_table's second result)."""
        out = frame.copy()
        for c in self.quasi_identifiers:
            out[c] = pd.array(self.labels[c][rows], dtype="string")
        drop = self.drop[rows]
        return out.loc[~drop] if drop.any() else out


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


def floor_time(values: pd.Series, unit: str) -> pd.Series:
    """Times truncated to the start of their hour, day, week (Monday), month, quarter or year, still times
    (missing stays missing): the level-0 value truncate_time labels, as a value that sorts as the times do.
    Values that are not naive datetimes are returned as they are (grouped on their own values)."""
    if not pd.api.types.is_datetime64_dtype(values.dtype):
        return values
    v = values.to_numpy(dtype="datetime64[ns]")
    if unit in ("hour", "day", "month", "year"):
        f = v.astype(f"datetime64[{ {'hour': 'h', 'day': 'D', 'month': 'M', 'year': 'Y'}[unit]}]")
    elif unit == "week":
        d = v.astype("datetime64[D]")
        # 1970-01-01 was a Thursday: days since the epoch + 3, mod 7, is the weekday (Monday 0).
        f = d - ((d.astype(np.int64) + 3) % 7).astype("timedelta64[D]")
    elif unit == "quarter":
        m = v.astype("datetime64[M]")
        f = m - (m.astype(np.int64) % 3).astype("timedelta64[M]")  # months since 1970-01, a quarter start
    else:
        raise InternalError(f"floor_time: unknown unit {unit!r}")
    return pd.Series(f.astype("datetime64[ns]"), index=values.index, name=values.name)


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
    recoding: Literal["full-domain", "local"] = "full-domain"
    "full-domain: one level per column for every record (lattice search); local: per class, top-down (Mondrian-like)."
    levels: dict[str, int | Literal["max"]] | None = None
    "Generalization level per quasi-identifier fixed by hand ('max' = '*'); skips the search."
    population: Population | None = None
    "Population model for journalist risk and population uniqueness."
    risk_threshold: float = Field(default=0.2, gt=0, le=1)
    "Records whose re-identification risk exceeds this are counted in the report's share_above."
    protected: tuple[str, ...] = ()
    "Columns whose groups must not bear the suppression (perceived race, gender, age group): reported per value."
    max_group_suppression: GroupCap | None = None
    "Caps on the share of a group's records suppressed; the search keeps only nodes within them."

    @model_validator(mode="after")
    def _check(self) -> KAnonymityStep:
        overlap = set(self.sensitive) & set(self.quasi_identifiers)
        if overlap:
            raise ValueError(f"columns cannot be both quasi-identifier and sensitive: {sorted(overlap)}")
        if self.weights is not None and (set(self.weights) - set(self.quasi_identifiers)
                                         or any(w <= 0 for w in self.weights.values())):
            raise ValueError("weights must be positive and name only quasi-identifiers")
        if self.recoding == "local" and (self.levels is not None or self.max_suppression or
                                         self.suppression == "cells"):
            raise ValueError("recoding: local splits classes until k/l/t would break, so it takes no levels,"
                             " max_suppression or cell suppression")
        if self.recoding == "local" and any(h.missing == "any" for h in self.quasi_identifiers.values()):
            raise ValueError("recoding: local treats a missing value as its own category (missing: any is"
                             " for full-domain recoding)")
        if self.levels is not None and set(self.levels) != set(self.quasi_identifiers):
            raise ValueError("levels must give a level for every quasi-identifier, and only for them")
        cap = self.max_group_suppression
        if cap is not None and cap.columns is not None:
            bad = set(cap.columns) - set(self.quasi_identifiers) - set(self.protected)
            if bad:
                raise ValueError(f"max_group_suppression.columns must be quasi-identifiers or protected: {sorted(bad)}")
        return self

    def referenced_columns(self) -> list[str]:
        extra = [c for c in self.protected if c not in self.quasi_identifiers and c not in self.sensitive]
        return list(self.quasi_identifiers) + list(self.sensitive) + extra

    def group_columns(self) -> list[str]:
        """Columns whose values are the groups of the fairness figures: quasi-identifiers, then protected."""
        return list(self.quasi_identifiers) + [c for c in self.protected if c not in self.quasi_identifiers]

    def capped_columns(self) -> list[str]:
        cap = self.max_group_suppression
        if cap is None:
            return []
        if cap.columns is not None:
            return list(cap.columns)
        return list(self.protected) if self.protected else list(self.quasi_identifiers)

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
        if self.recoding == "local":
            return f"{self.k}-anonymity on {', '.join(self.quasi_identifiers)}{extra} (local recoding)"
        return (f"{self.k}-anonymity on {', '.join(self.quasi_identifiers)}{extra}"
                f" (≤{self.max_suppression:.1%} suppressed, {self.loss} loss)")

    def plan_info(self, schema: Schema) -> dict[str, Any]:
        return {"quasi_identifiers": list(self.quasi_identifiers), "k": self.k,
                "sensitive": {c: s.model_dump(exclude_none=True) for c, s in self.sensitive.items()},
                "max_suppression": self.max_suppression,
                "search": "local (top-down)" if self.recoding == "local" else
                "fixed levels" if self.levels else "lattice"}

    # ---------------------------------------------------------------------------------------------

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        from release.series.records import keep_series

        # Re-releases (docs/series.md): joined records may keep their earlier values (series.joint).
        return keep_series(self, *self._apply(frame, ctx), ctx)

    def _apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The records' frequency table, the decision on it (decide), then the decision applied to the records."""
        ft, inv = self.frequency_table(frame)
        recoding, ev = self.decide(ft, ctx)
        return recoding.apply(frame, inv), ev

    # --- the frequency table: what the search runs on, in every runner -----------------------------

    def frequency_columns(self) -> list[str]:
        """The columns of the frequency table: quasi-identifiers, sensitive and protected columns."""
        return self.referenced_columns()

    def frequency_table(self, frame: pd.DataFrame, firsts: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
        """(the frequency table of the records, its row for each record).

        One row per distinct combination of frequency_columns() at their level-0 values (missing values
        are a value of their own) with its records in COUNT, in the canonical order of the values: a
        runner that computes the same table another way (a Spark group-by) and puts it in this order
        (canonical_frequency) hands decide exactly the same input. A time quasi-identifier is grouped
        on its time truncated to the hierarchy's first unit (level0_times): the search never looks finer
        (level 0 is that unit), so the table has a row per quarter, not per day, and decides the same.
        `firsts`: keep the FIRST columns (each row's earliest raw time) that fix this order.
        """
        cols = self.frequency_columns()
        floors = self.level0_times()
        if not floors:
            g = frame[cols].groupby(cols, dropna=False, sort=True, observed=True)
            inv = g.ngroup().to_numpy(dtype=np.int64)
            ft = g.size().rename(COUNT).reset_index()
            ft[COUNT] = ft[COUNT].astype(np.int64)
            return ft, inv
        keys = frame[cols].copy()
        for c, unit in floors.items():
            keys[c] = floor_time(keys[c], unit)
        g = keys.groupby(cols, dropna=False, sort=True, observed=True)
        gid = g.ngroup().to_numpy(dtype=np.int64)
        ft = g.size().rename(COUNT).reset_index()
        ft[COUNT] = ft[COUNT].astype(np.int64)
        for c in floors:
            # Each row's earliest time: the rows then take the order the raw times gave them (_in_order).
            ft[FIRST + c] = frame[c].groupby(gid).min().to_numpy()
        order = self._in_order(ft)
        ft = ft.iloc[order].reset_index(drop=True)
        if not firsts:
            ft = ft.drop(columns=[FIRST + c for c in floors])
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        return ft, rank[gid]

    def _in_order(self, ft: pd.DataFrame) -> np.ndarray:
        """Row order of a frequency table grouped on level-0 times: by its columns, each time column standing
        as its row's earliest time (FIRST + column). That is the order the rows would have had grouped on the
        raw times, so each column's values first appear in the same order and decide (whose codes and
        tie-breaks follow that order) decides exactly what it decides on the raw table."""
        floors = self.level0_times()
        by = [FIRST + c if c in floors else c for c in self.frequency_columns()]
        keys = ft[by].reset_index(drop=True)
        return keys.sort_values(by, na_position="last", kind="stable").index.to_numpy(dtype=np.int64)

    def level0_times(self) -> dict[str, str]:
        """Time quasi-identifiers and the unit of their level 0: the frequency table holds their times
        truncated to it (floor_time; release/spark groups on Spark's date_trunc of the same unit)."""
        return {c: h.time[0] for c, h in self.quasi_identifiers.items() if h.time is not None}

    def canonical_frequency(self, ft: pd.DataFrame, carry: tuple[str, ...] = ()) -> pd.DataFrame:
        """A frequency table computed elsewhere (rows in any order) in frequency_table's order; `carry`
        columns (a runner's row ids) follow their rows."""
        cols = self.frequency_columns()
        floors = [c for c in self.level0_times() if FIRST + c in ft.columns]
        aggs = {COUNT: (COUNT, "sum"), **{FIRST + c: (FIRST + c, "min") for c in floors},
                **{c: (c, "first") for c in carry}}
        out = ft.groupby(cols, dropna=False, sort=True, observed=True).agg(**aggs).reset_index()
        out[COUNT] = out[COUNT].astype(np.int64)
        if floors:
            out = out.iloc[self._in_order(out)].drop(columns=[FIRST + c for c in floors]).reset_index(drop=True)
        return out

    def build_problem(self, frame: pd.DataFrame, base: Any = None, counts: np.ndarray | None = None) -> Problem:
        qis = [encode_column(frame[c], h, c, base) for c, h in self.quasi_identifiers.items()]
        sens = [encode_sensitive(frame[c], c, s, counts) for c, s in self.sensitive.items()]
        weights = [float((self.weights or {}).get(c, 1.0)) for c in self.quasi_identifiers]
        passive = [(c, *_codes(frame[c])[:2]) for c in self.protected if c not in self.quasi_identifiers]
        return Problem(qis, sens, self.k, self.max_suppression, self.loss, weights, passive=passive,
                       cap=self.max_group_suppression, capped=self.capped_columns(), counts=counts)

    def decide(self, ft: pd.DataFrame, ctx: StepContext) -> tuple[Recoding, dict[str, Any]]:
        """The search on a frequency table (frequency_table's columns and order): the recoding of each of its
        rows and the step's evidence. Nothing here reads a record: the local runner and release/spark
        compute the table their own way and apply the same Recoding to their records."""
        t0 = time.perf_counter()
        from release.anonymize.files import hierarchy_resolver

        counts = ft[COUNT].to_numpy(dtype=np.int64)
        prob = self.build_problem(ft, hierarchy_resolver(getattr(ctx, "options", {}), ctx.policy_path),
                                  counts.astype(float))
        where = f"k-anonymity on {', '.join(self.quasi_identifiers)}"
        if self.recoding == "local":
            return self._decide_local(ft, counts, prob, ctx, where, t0)
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
                                   + (f" need {ev.suppressed:.1%} suppression, above max_suppression"
                                      f" {self.max_suppression:.1%}" if ev.caps_ok else
                                      " suppress more of some group than max_group_suppression allows")
                                   + "; nothing was published")
        else:
            res = prob.search()
            if res.evaluation is None:
                raise BlockedError(f"{where}: no generalization satisfies k={self.k}"
                                   + (f" and the l/t models on {sorted(self.sensitive)}" if self.sensitive else "")
                                   + f" with at most {self.max_suppression:.1%} of records suppressed"
                                   + (f" and every group of {', '.join(self.capped_columns())} within"
                                      " max_group_suppression" if self.max_group_suppression else "")
                                   + "; nothing was published",
                                   details=["raise max_suppression, add hierarchy levels, or lower k/l"
                                            + (", or loosen max_group_suppression" if self.max_group_suppression
                                               else "")])
            ev, evaluated, size = res.evaluation, res.evaluated, res.lattice_size
            node = ev.node
        # Re-judge the chosen node from the bottom table so failing classes map back to rows.
        table, inv = prob.rollup(node, prob.bottom)
        final = prob._judge(node, table, inv)
        failed_bottom = final.fail[final.row_class[inv]]
        failed = failed_bottom[prob.record_row] if len(prob.record_row) else np.zeros(0, dtype=bool)
        labels = {q.name: q.labels[lv][q.maps[lv][q.codes0]] for q, lv in zip(prob.qis, node, strict=True)}
        fallback = False
        drop = failed
        if self.suppression == "cells" and failed.any():
            starred = {c: np.where(failed, STAR, lab).astype(object) for c, lab in labels.items()}
            # The '*' rows form a class of their own: publish them only if it meets every model.
            if self._violations(self._published(ft, starred, np.zeros(len(ft), bool)), counts):
                fallback = True
            else:
                labels, drop = starred, np.zeros(len(ft), dtype=bool)
        recoding = Recoding(tuple(self.quasi_identifiers), labels, drop)
        # Verify on the result itself, as `release check` will. Suppression changes the published
        # distribution that t-closeness is measured against, so t can fail here though the search met it.
        broken = self._violations(self._published(ft, labels, drop), counts[~drop])
        if broken:
            if any(b.startswith("k") for b in broken):
                raise InternalError(f"{where}: result breaks {broken} (this is a bug)")
            raise BlockedError(f"{where}: after suppression the published table breaks {', '.join(broken)};"
                               " nothing was published", details=["raise t, or lower max_suppression"])
        pub = self._published(ft, labels, drop)
        fair_pub, fair_int = self._fairness(prob, node, failed, ft, pub, ctx, counts=counts)
        ctx.internal.setdefault("fairness", {})[",".join(self.quasi_identifiers)] = fair_int
        ctx.internal.setdefault("anonymize", {})[",".join(self.quasi_identifiers)] = {
            q.name: {str(k): str(v) for k, v in zip(
                (str(x) for x in q.labels[0]), q.labels[lv][q.maps[lv][np.arange(len(q.labels[0]))]], strict=True)}
            for q, lv in zip(prob.qis, node, strict=True) if len(q.labels[0]) <= 5000}
        n_failed = int(counts[failed].sum())
        n = int(counts.sum())
        return recoding, {
            "quasi_identifiers": list(self.quasi_identifiers),
            "levels": {q.name: int(lv) for q, lv in zip(prob.qis, node, strict=True)},
            "heights": {q.name: int(q.height) for q in prob.qis},
            "loss": self.loss, "information_loss": round(float(ev.loss), 6),
            "suppressed_records": n_failed, "suppressed_share": round(n_failed / n if n else 0.0, 6),
            "suppression": "records (local suppression fell back: the '*' class failed the models)"
            if fallback else self.suppression,
            "fairness": fair_pub,
            "lattice_size": int(size), "nodes_evaluated": int(evaluated),
            "search_seconds": round(time.perf_counter() - t0, 3),
        }

    def _published(self, ft: pd.DataFrame, labels: dict[str, np.ndarray], drop: np.ndarray) -> pd.DataFrame:
        """The frequency table of what is published: recoded quasi-identifiers, dropped rows removed."""
        out = ft.loc[~drop].reset_index(drop=True)
        for c, lab in labels.items():
            out[c] = pd.array(np.asarray(lab, dtype=object)[~drop], dtype="string")
        return out

    def _decide_local(self, ft: pd.DataFrame, counts: np.ndarray, prob: Problem, ctx: Any, where: str,
                      t0: float) -> tuple[Recoding, dict[str, Any]]:
        from release.anonymize.local import local_recode

        ordered, seps = self._ordered(prob)
        res = local_recode(prob, ordered, seps)
        if res is None:
            raise BlockedError(f"{where}: the whole file fails k={self.k}"
                               + (f" or the l/t models on {sorted(self.sensitive)}" if self.sensitive else "")
                               + " even with every value generalized to '*'; nothing was published")
        labels: dict[str, np.ndarray] = {}
        full = np.ones(len(ft), dtype=bool)
        for j, q in enumerate(prob.qis):
            lab = res.labels(prob, j)
            labels[q.name] = np.asarray(lab, dtype=object)
            full &= lab.astype(str) == q.labels[0][q.codes0].astype(str)
        drop = np.zeros(len(ft), dtype=bool)
        pub = self._published(ft, labels, drop)
        broken = self._violations(pub, counts)
        if broken:
            raise InternalError(f"{where}: local recoding breaks {broken} (this is a bug)")
        fair_pub, fair_int = self._fairness(prob, None, drop, ft, pub, ctx, full=full, counts=counts)
        ctx.internal.setdefault("fairness", {})[",".join(self.quasi_identifiers)] = fair_int
        lv = res.levels[prob.record_row] if len(prob.record_row) else np.zeros((0, len(prob.qis)), dtype=np.int64)
        used = {}
        for j, q in enumerate(prob.qis):
            vals, inv = np.unique(lv[:, j], return_inverse=True)
            per = np.bincount(inv.ravel(), weights=counts, minlength=len(vals)) if len(vals) else np.zeros(0)
            used[q.name] = {("interval" if a < 0 else str(int(a))): int(b) for a, b in zip(vals, per, strict=True)}
        return Recoding(tuple(self.quasi_identifiers), labels, drop), {
            "quasi_identifiers": list(self.quasi_identifiers), "recoding": "local",
            "levels_used": used,
            "heights": {q.name: int(q.height) for q in prob.qis},
            "loss": "precision", "information_loss": round(res.loss, 6),
            "suppressed_records": 0, "suppressed_share": 0.0, "suppression": "none (local recoding)",
            "fairness": fair_pub, "partitions": int(res.partitions),
            "search_seconds": round(time.perf_counter() - t0, 3),
        }

    def _ordered(self, prob: Problem) -> tuple[list[np.ndarray | None], list[str]]:
        """Rank order of the level-0 codes of the columns local recoding may publish as intervals: times,
        and numbers without bottom/top coding (an interval must not reveal a rare extreme) or missing values."""
        out: list[np.ndarray | None] = []
        seps: list[str] = []
        for q, h in zip(prob.qis, self.quasi_identifiers.values(), strict=True):
            lab0 = q.labels[0]
            missing = any(x is None for x in lab0)
            if h.time is not None and not missing:
                out.append(np.argsort(lab0.astype(str), kind="stable"))
                seps.append("/")  # ISO 8601 interval
            elif (h.widths is not None or h.age) and h.bottom is None and h.top is None and not missing:
                out.append(np.argsort(pd.to_numeric(pd.Series(lab0)).to_numpy(dtype=float), kind="stable"))
                seps.append("-")
            else:
                out.append(None)
                seps.append("")
        return out, seps

    def _fairness(self, prob: Problem, node: tuple[int, ...] | None, failed: np.ndarray, frame: pd.DataFrame,
                  out: pd.DataFrame, ctx: Any, full: np.ndarray | None = None,
                  counts: np.ndarray | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Per group: share suppressed and share published at full detail (every quasi-identifier value
        unchanged); exact for the internal report, banded for the public one. `frame` rows stand for
        `counts` records each (a frequency table), `out` holds the published values."""
        n = len(failed)
        if full is None:
            assert node is not None
            full = np.ones(n, dtype=bool)
            for q, lv in zip(prob.qis, node, strict=True):
                codes = np.arange(len(q.labels[0]))
                same = q.labels[lv][q.maps[lv][codes]].astype(str) == q.labels[0].astype(str)
                full &= same[q.codes0]
        schema = getattr(ctx, "schema", None) or {}
        capped = set(self.capped_columns())
        groups: list[GroupColumn] = []
        public: dict[str, set[str]] = {}
        for c in self.group_columns():
            if c in self.quasi_identifiers:
                q = prob.qis[list(self.quasi_identifiers).index(c)]
                groups.append(GroupColumn(c, q.codes0.astype(np.int64), [str(x) for x in q.labels[0]], c in capped))
            else:
                codes, _, labels = _codes(frame[c])
                groups.append(GroupColumn(c, codes, labels, c in capped))
            declared = schema[c].categories if c in schema and schema[c].categories else ()
            seen = set(out[c].dropna().astype(str).unique()) if c in out.columns and len(out) else set()
            public[c] = set(map(str, declared)) | seen
        return fairness_figures(groups, failed, full, self.max_group_suppression, public, weights=counts)

    def sensitive_missing(self) -> dict[str, str]:
        return {c: h.missing for c, h in self.quasi_identifiers.items()}

    def _violations(self, table: pd.DataFrame, counts: np.ndarray | None = None) -> list[str]:
        """Models the table breaks, measured as `release check` measures them (rows standing for
        `counts` records each: a frequency table of the published records)."""
        if not len(table):
            return []
        from release.anonymize.assess import measure

        fig = measure(table, list(self.quasi_identifiers), self.sensitive_missing(), self.sensitive, None,
                      self.risk_threshold, weights=None if counts is None else np.asarray(counts, dtype=float))
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


def _codes(values: pd.Series) -> tuple[np.ndarray, int, list[str]]:
    """Integer codes of a column (missing values are a group of their own), the number of codes, labels."""
    codes, uniq = pd.factorize(values, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    labels = [str(x) for x in uniq]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(labels), codes)
        labels.append("(missing)")
    return codes, max(len(labels), 1), labels


def encode_sensitive(values: pd.Series, name: str, spec: SensitiveSpec,
                     weights: np.ndarray | None = None) -> SensitiveColumn:
    """Codes in the column's order (declared, numeric, else lexicographic); missing is its own value.
    `weights`: records per row (a frequency table), for the global distribution."""
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
    dist = np.bincount(codes, weights=weights, minlength=card).astype(float)
    return SensitiveColumn(name=name, codes=codes, card=max(card, 1), spec=spec,
                           global_dist=dist / max(dist.sum(), 1.0))


from release.anonymize import assess as _assess  # noqa: E402,F401  (registers the records assessor)
