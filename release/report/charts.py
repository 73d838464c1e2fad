"""Charts for the disclosure-risk report: matplotlib figures rendered to inline, self-contained SVG."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

# Figures are built with the object API (no pyplot): no global figure state, safe inside a library.
_RC: Any = {
    "svg.fonttype": "none",  # text stays text: searchable, selectable, small
    "svg.hashsalt": "release-report",  # deterministic element ids, so the same report renders the same bytes
    "font.family": "sans-serif",
    "font.size": 10,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
}
ACCENT = "#1f5f8b"
WARN = "#b3261e"
MUTED = "#8a8f98"
OK = "#2e7d32"
W = 3.9
"Figure width (inches): with 10 pt text, drawn at a 390 px phone's width every label is at least 10 px tall."

_METADATA = re.compile(r"\s*<metadata>.*?</metadata>", re.S)
_SVG_SIZE = re.compile(r'<svg([^>]*?) width="[^"]*" height="[^"]*"')


def to_svg(fig: Figure, label: str) -> str:
    """The figure as an <svg> element sized by CSS (viewBox kept), labelled for screen readers."""
    with matplotlib.rc_context(_RC):
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight", dpi=150, metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = _SVG_SIZE.sub(r"<svg\1", text, count=1)
    text = _METADATA.sub("", text, count=1)
    safe = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return text.replace("<svg", f'<svg class="chart" role="img" aria-label="{safe}"', 1)


def _wrap(title: str, n: int = 40) -> str:
    """A title wrapped to the figure's width (a wider title would shrink the whole drawing)."""
    import textwrap

    return "\n".join(textwrap.wrap(title, n)) or title


def _short(labels: Sequence[str], n: int = 20) -> list[str]:
    """Axis labels cut to n characters: a long label widens the drawing and shrinks every text on a phone."""
    return [x if len(x) <= n else x[:n - 1] + "…" for x in map(str, labels)]


def _fig(w: float | None = None, h: float = 3.0) -> Figure:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(w or W, h))
        fig.add_subplot(1, 1, 1)
    return fig


def class_sizes(dist: dict[Any, Any], min_k: int | None) -> str:
    """Number of equivalence classes by class size, with the policy's k marked."""
    with matplotlib.rc_context(_RC):
        pairs = sorted((int(float(k)), int(v)) for k, v in dist.items())
        fig = _fig()
        ax = fig.axes[0]
        sizes = np.array([p[0] for p in pairs])
        counts = np.array([p[1] for p in pairs])
        if len(sizes) > 40:
            # Many distinct sizes: bin them on a log scale so small classes stay visible.
            edges = np.unique(np.geomspace(max(sizes.min(), 1), sizes.max() + 1, 25).astype(int))
            hist, edges = np.histogram(sizes, bins=edges, weights=counts)
            ax.bar(edges[:-1], hist, width=np.diff(edges), align="edge", color=ACCENT, edgecolor="white")
            ax.set_xscale("log")
        else:
            colors = [WARN if min_k and s < min_k else ACCENT for s in sizes]
            ax.bar([str(s) for s in sizes], counts, color=colors)
            if len(sizes) > 12:
                # Upright labels stay legible on a phone: label every few sizes instead of rotating them all.
                step = int(np.ceil(len(sizes) / 12))
                for i, t in enumerate(ax.get_xticklabels()):
                    t.set_visible(i % step == 0)
        if min_k and len(sizes) > 40:
            ax.axvline(min_k, color=WARN, linestyle="--", linewidth=1, label=f"policy k = {min_k}")
            ax.legend(frameon=False)
        ax.set_xlabel("class size (records sharing the same quasi-identifier values)")
        ax.set_ylabel("classes")
        ax.set_title("Equivalence classes by size")
        return to_svg(fig, "Equivalence classes by size")


def displacement(disp: dict[str, Any]) -> str:
    """Displacement summary (min, median, p95, max) as a dot-and-range chart in metres."""
    with matplotlib.rc_context(_RC):
        keys = [k for k in ("min", "median", "p95", "max") if isinstance(disp.get(k), (int, float))]
        vals = [float(disp[k]) for k in keys]
        fig = _fig(W, 1.5)
        ax = fig.axes[0]
        if vals:
            ax.hlines(0, min(vals), max(vals), color=MUTED, linewidth=2)
            ax.scatter(vals, [0] * len(vals), s=45, color=ACCENT, zorder=3)
            for i, (k, v) in enumerate(zip(keys, vals, strict=True)):
                # Alternate above/below so close values (min and median) stay legible.
                ax.annotate(f"{k} {v:,.0f} m", (v, 0), textcoords="offset points", xytext=(0, 9 if i % 2 == 0 else -16),
                            ha="center", fontsize=10)
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.set_ylim(-0.4, 0.9)
        ax.set_xlabel("distance between true and published location (m)")
        ax.set_title("Displacement")
        return to_svg(fig, "Displacement of published locations")


def displacement_histogram(edges: Sequence[float], counts: Sequence[float], disp: dict[str, Any]) -> str:
    """Records by displacement band (bands as the assessment defined them), with the median and p95 marked."""
    with matplotlib.rc_context(_RC):
        fig = _fig(W, 2.6)
        ax = fig.axes[0]
        # n+1 edges close every band; n edges leave the last band open ("5,000+").
        labels = [f"{edges[i]:,.0f}–{edges[i + 1]:,.0f}" if i + 1 < len(edges) else f"{edges[i]:,.0f}+"
                  for i in range(len(counts))]
        ax.bar(labels, counts, color=ACCENT)
        ax.tick_params(axis="x", labelrotation=45, labelsize=10)
        notes = [f"{k} {float(disp[k]):,.0f} m" for k in ("median", "p95", "max") if isinstance(disp.get(k), (int, float))]
        if notes:
            ax.text(0.99, 0.95, " · ".join(notes), transform=ax.transAxes, ha="right", va="top", fontsize=10)
        ax.set_xlabel("distance between true and published location (m)")
        ax.set_ylabel("records")
        ax.set_title("Displacement")
        return to_svg(fig, "Displacement of published locations")


def _rings(geojson: dict[str, Any]) -> list[np.ndarray]:
    rings: list[np.ndarray] = []
    feats = geojson.get("features", []) if geojson.get("type") == "FeatureCollection" else [geojson]
    for f in feats:
        g = f.get("geometry") or {}
        polys = [g.get("coordinates", [])] if g.get("type") == "Polygon" else g.get("coordinates", []) \
            if g.get("type") == "MultiPolygon" else []
        for poly in polys:
            for ring in poly:
                a = np.asarray(ring, dtype=float)
                if a.ndim == 2 and len(a) >= 3:
                    rings.append(a[:, :2])
    return rings


MAP_MAX_POINTS = 20_000
"Distinct points drawn one by one on a map; beyond this the map shows hexagonal bins of the records."


def point_map(lon: np.ndarray, lat: np.ndarray, counts: np.ndarray, areas: dict[str, Any] | None,
              title: str) -> str:
    """Published points (size by records per point) over the area boundaries; no tiles, no network."""
    with matplotlib.rc_context(_RC):
        fig = _fig(W, 5.2)
        ax = fig.axes[0]
        rings = _rings(areas) if areas else []
        if rings:
            ax.add_collection(LineCollection(rings, colors=MUTED, linewidths=0.6))
        if len(lon) > MAP_MAX_POINTS:
            # More distinct points than a page can draw: hexagonal bins of the records (an aggregate),
            # said on the chart.
            ax.hexbin(lon, lat, C=counts, reduce_C_function=np.sum, gridsize=60, cmap="Blues", mincnt=1,
                      linewidths=0, rasterized=True)
            title = f"{title}: hexagonal bins of records (over {MAP_MAX_POINTS:,} distinct points)"
        elif len(lon):
            size = 2 + 10 * np.sqrt(counts / max(counts.max(), 1))
            # Thousands of markers would make a heavy page: draw them as one embedded image layer.
            ax.scatter(lon, lat, s=size, color=ACCENT, alpha=0.6, linewidths=0, rasterized=len(lon) > 800)
        xs = np.concatenate([lon] + [r[:, 0] for r in rings]) if rings or len(lon) else np.array([0.0, 1.0])
        ys = np.concatenate([lat] + [r[:, 1] for r in rings]) if rings or len(lat) else np.array([0.0, 1.0])
        if len(xs):
            ax.set_xlim(xs.min(), xs.max())
            ax.set_ylim(ys.min(), ys.max())
            ax.set_aspect(1 / max(np.cos(np.radians(float(np.mean(ys)))), 0.1))
        ax.set_xticks([])
        ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
        ax.set_title(_wrap(title))
        return to_svg(fig, title)


def intervals(labels: Sequence[str], values: np.ndarray, lo: np.ndarray, hi: np.ndarray, title: str) -> str:
    """Published noisy values with their 95% intervals, one row per cell."""
    with matplotlib.rc_context(_RC):
        n = len(labels)
        fig = _fig(W, min(1.2 + 0.18 * n, 9.0))
        ax = fig.axes[0]
        y = np.arange(n)[::-1]
        ax.errorbar(values, y, xerr=[values - lo, hi - values], fmt="o", color=ACCENT, ecolor=MUTED,
                    markersize=3, capsize=2, linewidth=1)
        ax.set_yticks(y)
        ax.set_yticklabels(_short(labels), fontsize=10)
        ax.axvline(0, color=MUTED, linewidth=0.5)
        ax.set_xlabel("published value with 95% interval")
        ax.set_title(_wrap(title))
        return to_svg(fig, title)


def stacked_share(parts: dict[str, float], title: str) -> str:
    """One horizontal bar split into named parts (e.g. published / primary / secondary cells)."""
    with matplotlib.rc_context(_RC):
        fig = _fig(W, 1.6)
        ax = fig.axes[0]
        left = 0.0
        palette = [ACCENT, WARN, "#e39b2d", MUTED, OK]
        for i, (name, v) in enumerate(parts.items()):
            ax.barh(0, v, left=left, color=palette[i % len(palette)], label=f"{name}: {v:,.0f}")
            left += v
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
        ax.legend(frameon=False, ncols=min(len(parts), 3), loc="upper center", bbox_to_anchor=(0.5, -0.35))
        ax.set_title(_wrap(title))
        return to_svg(fig, title)


def bars(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str,
         highlight: Sequence[bool] | None = None) -> str:
    """Horizontal bars, one per label (used for pipeline counts, budgets and category counts)."""
    with matplotlib.rc_context(_RC):
        n = len(labels)
        fig = _fig(W, min(1.0 + 0.26 * n, 8.0))
        ax = fig.axes[0]
        y = np.arange(n)[::-1]
        colors = [WARN if highlight and highlight[i] else ACCENT for i in range(n)]
        ax.barh(y, values, color=colors)
        ax.set_yticks(y)
        ax.set_yticklabels(_short(labels), fontsize=10)
        vmax = max([float(v) for v in values] + [0.0])
        for yi, v in zip(y, values, strict=True):
            ax.annotate(f"{v:,.4g}", (float(v), yi), textcoords="offset points", xytext=(3, 0), va="center",
                        fontsize=10)
        ax.set_xlim(0, vmax * 1.15 if vmax > 0 else 1)
        ax.set_xlabel(xlabel)
        ax.set_title(_wrap(title))
        return to_svg(fig, title)


def index_intervals(labels: Sequence[str], values: np.ndarray, lo: np.ndarray, hi: np.ndarray, title: str) -> str:
    """Indices with their 95% intervals, 1 marked (parity); unbounded intervals drawn to the edge with an arrow."""
    with matplotlib.rc_context(_RC):
        n = len(labels)
        fig = _fig(W, min(1.2 + 0.28 * n, 9.0))
        ax = fig.axes[0]
        y = np.arange(n)[::-1]
        finite = np.concatenate([x[np.isfinite(x)] for x in (values, lo, hi)] + [np.array([1.0])])
        right = float(finite.max()) * 1.1
        top = np.where(np.isfinite(hi), hi, right)
        low = np.where(np.isfinite(lo), lo, 0.0)
        ax.hlines(y, low, top, color=MUTED, linewidth=2)
        open_end = ~np.isfinite(hi)
        if open_end.any():
            ax.scatter(top[open_end], y[open_end], marker=">", color=WARN, s=30, zorder=3, label="no upper bound")
            ax.legend(frameon=False, loc="lower right")
        ok = np.isfinite(values)
        ax.scatter(values[ok], y[ok], color=ACCENT, s=22, zorder=4)
        ax.axvline(1.0, color=WARN, linestyle="--", linewidth=0.8)
        ax.set_yticks(y)
        ax.set_yticklabels(_short(labels))
        ax.set_xlim(0, right)
        ax.set_xlabel("index (1 = parity) with 95% interval")
        ax.set_title(_wrap(title))
        return to_svg(fig, title)
