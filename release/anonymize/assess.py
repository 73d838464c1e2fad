"""Anonymity figures of a published record-level table (k, l, t, risks), recomputed by run and check."""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np
import pandas as pd

from release.anonymize.lattice import classes_of, compatible_sizes
from release.anonymize.models import entropy_l, group_pairs, recursive_cl, t_distance
from release.anonymize.risk import histogram, journalist, population_uniqueness, prosecutor
from release.context import AssessContext
from release.policy.base import Role
from release.registry import register_assessor


def _object_codes(values: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Codes of an object array through the identity of its objects, or None when that would not pay.

    pandas' CSV reader hands out one str object per distinct value (per chunk), so a published column
    holds a few hundred distinct pointers: hashing those as integers and then hashing only one object per
    pointer by value is several times cheaper than hashing every string. The same object is always the
    same value, and distinct objects are merged by value, so the codes equal `pd.factorize`'s up to order.
    """
    n = len(values)
    if n < 4096 or not values.flags.c_contiguous:
        return None
    # The array holds references: read the pointers without touching the objects (it keeps them alive).
    ptr = np.ctypeslib.as_array((ctypes.c_ssize_t * n).from_address(values.ctypes.data))
    if len(np.unique(ptr[:4096])) > 256:  # mostly distinct objects (e.g. built row by row): no gain
        return None
    pcodes, uptr = pd.factorize(ptr)
    if len(uptr) > n // 8:
        return None
    # One object per distinct pointer, looked up by address (a loop over a few hundred pointers, not rows);
    # every one of them is alive, held by `values`.
    reps = np.empty(len(uptr), dtype=object)
    reps[:] = [ctypes.cast(int(p), ctypes.py_object).value for p in uptr]
    vcodes, uniq = pd.factorize(reps, use_na_sentinel=True)
    lut = np.asarray(vcodes, dtype=np.int64)
    return lut[pcodes], len(uniq)


def column_codes(col: pd.Series) -> tuple[np.ndarray, int]:
    """Integer codes of a column (-1 for missing) and the number of distinct non-missing values."""
    arr = col.array
    raw = getattr(arr, "_ndarray", None) if isinstance(col.dtype, pd.StringDtype) else None
    if raw is None and col.dtype == object:
        raw = col.to_numpy()
    if raw is not None and raw.dtype == object:
        got = _object_codes(raw)
        if got is not None:
            return got
    codes, uniq = pd.factorize(col, use_na_sentinel=True)
    return np.asarray(codes, dtype=np.int64), len(uniq)


def class_sizes(frame: pd.DataFrame, qis: list[str], missing: dict[str, str],
                weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per record: class id, exact class size and the size k is judged on.

    Values compare as published ('*' is a value of its own). A missing value is its own category,
    unless its column says `missing: any`: then it matches every value and a record's size is the
    number of records compatible with it (sdcMicro's rule for keys with missing values).
    """
    n = len(frame)
    if not qis:
        z = np.zeros(n, dtype=np.int64)
        total = float(n) if weights is None else float(np.sum(weights))
        return z, np.full(n, total), np.full(n, total)
    cols, cards, miss = [], [], []
    for c in qis:
        codes, u = column_codes(frame[c])
        cols.append(np.where(codes < 0, u, codes))
        cards.append(u + 1)
        miss.append(u if missing.get(c) == "any" and (codes < 0).any() else -1)
    cls, first = classes_of(cols, cards)
    # `weights`: records per row when the rows are a frequency table (release/anonymize/step.py).
    sizes = np.bincount(cls, weights=weights, minlength=len(first)).astype(float)
    ksizes = sizes
    if any(m >= 0 for m in miss):
        ksizes = compatible_sizes([c[first] for c in cols], cards, miss, sizes)
    return cls, sizes[cls], ksizes[cls]


def measure(frame: pd.DataFrame, qis: list[str], missing: dict[str, str], sensitive: dict[str, Any],
            population: Any, threshold: float, weights: np.ndarray | None = None) -> dict[str, Any]:
    """Every anonymity figure of one table; `sensitive` maps column -> SensitiveSpec (or None).

    With `weights` the rows are a frequency table (each row stands for that many records): then
    only the class figures, l and t are measured (what the k-anonymity step verifies its result on).
    """
    from release.anonymize.step import encode_sensitive

    n = len(frame)
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=float)
    cls, size_rec, ksize_rec = class_sizes(frame, qis, missing, weights)
    n_classes = int(cls.max()) + 1 if n else 0
    sizes = np.bincount(cls, weights=weights, minlength=n_classes).astype(float)
    fig: dict[str, Any] = {
        "quasi_identifiers": list(qis), "records": n, "classes": n_classes,
        "k": int(ksize_rec.min()) if n else None,
        "class_size_distribution": {str(k): v for k, v in histogram(sizes).items()} if n else {},
    }
    if any(missing.get(c) == "any" for c in qis):
        fig["missing_semantics"] = "any (a missing value matches every value; k counts compatible records)"
    lfig: dict[str, Any] = {}
    tfig: dict[str, Any] = {}
    for col, spec in sensitive.items():
        if col not in frame.columns or not n:
            continue
        from release.anonymize.models import SensitiveSpec

        sp = spec or SensitiveSpec(l=1)
        enc = encode_sensitive(frame[col], col, sp, weights)
        pc, ps, pw = group_pairs(cls, enc.codes, w, enc.card)
        d = np.bincount(pc, minlength=n_classes)
        e = entropy_l(pc, pw, sizes)
        entry: dict[str, Any] = {"distinct": int(d.min()), "entropy": round(float(e.min()), 6)}
        if sp.model == "recursive" and sp.l is not None:
            ok = recursive_cl(pc, pw, n_classes, sp.l, sp.c or 1.0)
            entry["recursive_ok"] = bool(ok.all())
            entry["recursive_c"] = sp.c
        lfig[col] = entry
        if sp.t is not None:
            tfig[col] = round(float(t_distance(pc, ps, pw, sizes, enc).max()), 6)
    fig["l"] = lfig
    if tfig:
        fig["t"] = tfig
    if weights is not None:
        fig["records"] = int(w.sum())
        return fig
    pi = population.fraction(n) if population is not None else None
    risk_sizes = ksize_rec
    pros = prosecutor(risk_sizes, threshold)
    jour = journalist(risk_sizes, threshold, pi)
    fig["risk"] = {"threshold": threshold, "prosecutor": _r(pros), "journalist": _r(jour),
                   "marketer": {"average": round(jour["average"], 6)}}
    uniq = int((size_rec == 1).sum())
    fig["sample_uniques"] = {"records": uniq, "share": round(uniq / n, 6) if n else 0.0}
    if population is not None and pi is not None and n:
        fig["population_uniqueness"] = population_uniqueness(sizes, max(int(round(n / pi)), n))
    return fig


def _r(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in d.items()}


IDENTIFYING_ROLES = (Role.quasi_identifier, Role.area, Role.time)
"Roles of the columns an attacker may know about a person or an event (besides the point)."


def published_identifying(policy: Any, cols: list[str]) -> tuple[list[str], list[str]]:
    """Published columns an attacker could know: (quasi-identifiers, areas, times), and the point
    (latitude, longitude) when both are published. Roles are read from the schema after the steps."""
    from release.plan import compile_plan

    try:
        schema = compile_plan(policy).final_schema
    except Exception:  # noqa: BLE001 - a plan error is reported elsewhere; fall back to the input roles
        schema = dict(policy.input.columns)
    roles = {c: (schema[c].role if c in schema else policy.input.columns[c].role if c in policy.input.columns
                 else Role.other) for c in cols}
    ident = [c for c in cols if roles[c] in IDENTIFYING_ROLES]
    lat = [c for c in cols if roles[c] == Role.latitude]
    lon = [c for c in cols if roles[c] == Role.longitude]
    return ident, (lat[:1] + lon[:1] if lat and lon else [])


def published_risk(table: pd.DataFrame, ident: list[str], point: list[str], missing: dict[str, str],
                   threshold: float) -> dict[str, Any]:
    """Class sizes, sample uniques and prosecutor risk over everything published an attacker could know,
    with the point (latitude and longitude together: one value) and without it, and the sentence that
    says how many records the public can single out."""
    n = len(table)

    def one(cols: list[str]) -> dict[str, Any]:
        f = measure(table, cols, missing, {}, None, threshold)
        return {"columns": cols, "classes": f["classes"], "k": f["k"], "sample_uniques": f["sample_uniques"],
                "prosecutor": f["risk"]["prosecutor"], "class_size_distribution": f["class_size_distribution"]}

    with_point = one(ident + point)
    fig: dict[str, Any] = {"records": n, **with_point}
    if point:
        fig["without_point"] = one(ident)
    u = with_point["sample_uniques"]
    what = ", ".join(ident) + (" and the point" if point else "") if ident or point else "no identifying column"
    text = (f"{u['records']:,} of {n:,} records ({u['share']:.1%}) are unique on what the public can see"
            f" ({what})")
    if point:
        w = fig["without_point"]["sample_uniques"]
        text += f"; without the point, {w['records']:,} ({w['share']:.1%})"
    fig["statement"] = text + "."
    return fig


@register_assessor("records")
def assess_anonymity(out: Any, tables: dict[str, pd.DataFrame], actx: AssessContext) -> dict[str, Any]:
    """Recompute k, l, t and the risks of a records output from its published file; gate them.

    Beside the k step's own figures (over its quasi-identifiers), every records output gets the same
    figures over all published columns an attacker could know (`reidentification`): a k step does not
    widen its model to them; the report states k over the full set beside it, and the gate's
    `min_k_published` / `max_sample_uniques_share` can require it.
    """
    from release.anonymize.step import KAnonymityStep

    policy = actx.policy
    table = tables.get(out.name)
    if table is None:
        return {}
    cols = list(table.columns)
    fig_pub = _assess_published(policy, table, cols, actx, out)
    anon = _assess_k_step(policy, table, cols, actx, out, KAnonymityStep)
    if anon.get("quasi_identifiers") is not None:
        extra = [c for c in fig_pub["columns"] if c not in anon["quasi_identifiers"]]
        if extra:
            # The k step's claim covers its own columns only: say so beside it, with k over everything.
            fig_pub["beyond_k_step"] = extra
            fig_pub["statement"] += (f" The k step's k={anon['k']} covers {', '.join(anon['quasi_identifiers'])}"
                                     f" only; over every published identifying column k is {fig_pub['k']}.")
    # Beside (not inside) the k step's figures: an output with no k step has no `anonymity` figures.
    return {**({"anonymity": anon} if anon else {}), "reidentification": fig_pub}


def _assess_published(policy: Any, table: pd.DataFrame, cols: list[str], actx: AssessContext,
                      out: Any) -> dict[str, Any]:
    from release.anonymize.step import KAnonymityStep

    ident, point = published_identifying(policy, cols)
    missing: dict[str, str] = {}
    threshold = policy.gate.max_prosecutor_risk or 0.2
    for st in policy.steps:
        if isinstance(st, KAnonymityStep) and set(st.quasi_identifiers) & set(cols):
            missing = st.sensitive_missing()
            threshold = st.risk_threshold
    fig = published_risk(table, ident, point, missing, threshold)
    gate = policy.gate
    file = actx.files.get(out.name)
    cols_txt = ", ".join(fig["columns"]) or "no identifying column"
    if gate.min_k_published is not None:
        k = fig["k"]
        actx.finding("k-anonymity-published", k is None or k >= gate.min_k_published,
                     f"smallest class over every published identifying column ({cols_txt}): {k} record(s);"
                     f" the gate's min_k_published requires {gate.min_k_published}"
                     if k is not None else "no records published",
                     file=file, figure=k, threshold=gate.min_k_published)
    if gate.max_sample_uniques_share is not None:
        share = fig["sample_uniques"]["share"]
        actx.finding("sample-uniques", share <= gate.max_sample_uniques_share + 1e-12,
                     f"{fig['statement']} The gate allows {gate.max_sample_uniques_share:.1%}",
                     file=file, figure=share, threshold=gate.max_sample_uniques_share)
    return fig


def _assess_k_step(policy: Any, table: pd.DataFrame, cols: list[str], actx: AssessContext, out: Any,
                   KAnonymityStep: Any) -> dict[str, Any]:  # noqa: N803
    """The k step's own figures and findings, over its quasi-identifiers ({} when there is nothing to assess)."""
    steps: list[Any] = []
    for st in policy.steps:
        ka: Any = st
        if isinstance(ka, KAnonymityStep) and set(ka.quasi_identifiers) & set(cols):
            steps.append(ka)
    gate = policy.gate
    step = steps[-1] if steps else None
    missing: dict[str, str] = {}
    if step is not None:
        qis = [c for c in step.quasi_identifiers if c in cols]
        missing = step.sensitive_missing()
        sensitive: dict[str, Any] = dict(step.sensitive)
        population, threshold = step.population, step.risk_threshold
    else:
        if gate.min_k is None and gate.min_l is None and gate.max_prosecutor_risk is None:
            return {}
        qis = [c for c in policy.input.role_columns(Role.quasi_identifier) if c in cols]
        if not qis:
            return {}
        sensitive, population, threshold = {}, None, gate.max_prosecutor_risk or 0.2
    for c in policy.input.role_columns(Role.sensitive):
        if c in cols and c not in sensitive and c not in qis:
            sensitive[c] = None
    fig = measure(table, qis, missing, sensitive, population, threshold)
    file = actx.files.get(out.name)
    k = fig["k"]
    for need, who in ((step.k if step else None, "the k-anonymity step"), (gate.min_k, "the gate's min_k")):
        if need is not None:
            ok = k is None or k >= need
            actx.finding("k-anonymity", ok, f"smallest class on {', '.join(qis)}: {k} record(s); {who} requires"
                         f" {need}" if k is not None else "no records published", file=file, figure=k, threshold=need)
    for col, entry in fig["l"].items():
        spec = sensitive.get(col)
        if spec is not None and spec.l is not None:
            got = entry["distinct"] if spec.model == "distinct" else entry["entropy"]
            ok = got >= spec.l - 1e-9 and entry.get("recursive_ok", True)
            actx.finding("l-diversity", ok, f"{spec.model} l of {col}: {got} (policy l={spec.l}"
                         + (f", c={spec.c}: {'holds' if entry.get('recursive_ok') else 'fails'}"
                            if spec.model == "recursive" else "") + ")", file=file, figure=got, threshold=spec.l)
        if gate.min_l is not None and (spec is not None or step is None):
            got = entry["distinct"]
            actx.finding("l-diversity", got >= gate.min_l, f"distinct l of {col}: {got}; the gate's min_l is"
                         f" {gate.min_l}", file=file, figure=got, threshold=gate.min_l)
    for col, t in fig.get("t", {}).items():
        spec = sensitive[col]
        actx.finding("t-closeness", t <= spec.t + 1e-9, f"largest class distance of {col}: {t} (policy t={spec.t})",
                     file=file, figure=t, threshold=spec.t)
    pros = fig["risk"]["prosecutor"]
    if gate.max_prosecutor_risk is not None:
        actx.finding("prosecutor-risk", pros["highest"] <= gate.max_prosecutor_risk + 1e-12,
                     f"highest prosecutor risk {pros['highest']:.4f}; the gate allows {gate.max_prosecutor_risk}",
                     file=file, figure=pros["highest"], threshold=gate.max_prosecutor_risk)
    if gate.max_average_risk is not None:
        actx.finding("average-risk", pros["average"] <= gate.max_average_risk + 1e-12,
                     f"average prosecutor risk {pros['average']:.4f}; the gate allows {gate.max_average_risk}",
                     file=file, figure=pros["average"], threshold=gate.max_average_risk)
    return fig
