"""The deployment's registered data sources and budget ledger: release.toml `[sources.<name>]` and `[ledger]`.

A privacy budget belongs to the people in an internal source, not to a policy file: every DP
spend is accounted per (source, privacy-unit kind), whatever the dataset is called, where its
policy lives or which column it names as the unit. The deployment (release.toml, owned by the
operator) registers each source with its one privacy unit and the ceilings no policy may raise,
and names the one ledger every release of the deployment writes to.

    [ledger]
    path = "ledger.sqlite"            # relative to release.toml

    [sources.crime-records]
    unit = "person"                   # the privacy-unit kind every policy on this source protects
    epsilon_per_release = 2.0         # ceilings: a policy's caps may only be lower
    epsilon_per_period = 20.0
    delta_per_period = 1e-6
    period_days = 365                 # the rolling period of the *_per_period ceilings
    min_epsilon_per_release = 0.01    # floor: less epsilon publishes noise, not counts
"""

from __future__ import annotations

import math
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from release.errors import PolicyError, UsageError

if TYPE_CHECKING:
    from release.io.postgres import Connection
    from release.policy.models import Policy

MEASURES = ("epsilon", "rho", "delta")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

# Hard limits whatever a deployment writes: beyond them "differential privacy" protects no one
# (epsilon 20 lets an attacker's odds move by e^20), and a typo such as 1e9 must not pass.
HARD_MAX = {"epsilon_per_release": 10.0, "epsilon_per_period": 100.0, "rho_per_release": 5.0,
            "rho_per_period": 50.0, "delta_per_release": 1e-3, "delta_per_period": 1e-3}
# Default floors per release: below them the noise (95% error in the thousands for a count) buries
# every count; a deployment may set its own floor, never a non-normal float.
DEFAULT_MIN = {"epsilon": 0.01, "rho": 5e-5}
_CEILINGS = tuple(f"{m}_per_{w}" for m in MEASURES for w in ("release", "period"))
_KEYS = {"unit", "description", "period_days", "min_epsilon_per_release", "min_rho_per_release", *_CEILINGS}


def normal_positive(x: Any) -> bool:
    """A positive, finite, normal float: NaN, infinities, zero and denormals (e.g. 1e-320) are refused."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    v = float(x)
    return math.isfinite(v) and v >= sys.float_info.min


@dataclass(frozen=True)
class Source:
    """One registered internal source: its privacy-unit kind and the ceilings of its budget."""

    name: str
    unit: str
    "Privacy-unit kind (person, household, incident...): spends are keyed by (source, unit)."
    per_release: dict[str, float | None]
    "Ceiling per release and measure (None: none set for that measure)."
    per_period: dict[str, float | None]
    "Ceiling per rolling period and measure."
    period_days: int
    "Length of the rolling period of the per-period ceilings."
    min_per_release: dict[str, float]
    "Least epsilon (rho) one release may spend: less publishes noise instead of counts."


@dataclass(frozen=True)
class BudgetConfig:
    """The `[ledger]` and `[sources.*]` tables of the configuration."""

    config: Path | None
    "The configuration file (None: no configuration found)."
    ledger: Path | Connection | None
    """The deployment's one budget ledger: SQLite (relative paths resolved against the configuration file) or
    PostgreSQL (`[ledger] url`, release/dp/ledger_pg.py)."""
    sources: dict[str, Source] = field(default_factory=dict)

    def where(self) -> str:
        return f"configuration {self.config}" if self.config else "no configuration (release.toml)"


def _number(path: Path, where: str, v: Any) -> float:
    if not normal_positive(v):
        raise UsageError(f"configuration {path}: {where} must be a positive, finite, normal number")
    return float(v)


def _source(path: Path, name: str, t: Any) -> Source:
    if not NAME.match(name):
        raise UsageError(f"configuration {path}: [sources.{name[:40]}]: a source name is lower-case letters,"
                         " digits, '.', '_' or '-'")
    if not isinstance(t, dict):
        raise UsageError(f"configuration {path}: [sources.{name}] must be a table")
    unknown = sorted(set(t) - _KEYS)
    if unknown:
        raise UsageError(f"configuration {path}: sources.{name}.{unknown[0]}: unknown key")
    unit = t.get("unit")
    if not isinstance(unit, str) or not NAME.match(unit):
        raise UsageError(f"configuration {path}: sources.{name}.unit: the privacy-unit kind (e.g. \"person\") is"
                         " required, lower-case letters, digits, '.', '_' or '-'")
    caps: dict[str, float | None] = {}
    for k in _CEILINGS:
        caps[k] = None if t.get(k) is None else _number(path, f"sources.{name}.{k}", t[k])
        if caps[k] is not None and caps[k] > HARD_MAX[k]:  # type: ignore[operator]
            raise UsageError(f"configuration {path}: sources.{name}.{k} = {caps[k]:g} is above {HARD_MAX[k]:g},"
                             " the most any deployment may allow")
    if caps["epsilon_per_period"] is None and caps["rho_per_period"] is None:
        raise UsageError(f"configuration {path}: [sources.{name}] needs a period ceiling (epsilon_per_period or"
                         " rho_per_period): a budget without one never runs out")
    days = t.get("period_days", 365)
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
        raise UsageError(f"configuration {path}: sources.{name}.period_days must be a whole number of days (1-36500)")
    mins = {m: (_number(path, f"sources.{name}.min_{m}_per_release", t[f"min_{m}_per_release"])
                if t.get(f"min_{m}_per_release") is not None else DEFAULT_MIN[m]) for m in ("epsilon", "rho")}
    return Source(name=name, unit=unit, per_release={m: caps[f"{m}_per_release"] for m in MEASURES},
                  per_period={m: caps[f"{m}_per_period"] for m in MEASURES}, period_days=days, min_per_release=mins)


def load_budget_config(options: dict[str, Any] | None = None) -> BudgetConfig:
    """Read [ledger] and [sources.*] from the configuration (release.toml) the run or check uses."""
    from release.governance.config import config_path

    path = config_path(options)
    if path is None:
        return BudgetConfig(config=None, ledger=None)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"configuration {path}: not valid TOML ({type(e).__name__})") from None
    except OSError as e:
        raise UsageError(f"configuration {path}: cannot be read ({e.strerror})") from None
    led = doc.get("ledger", {})
    url_keys = {"url", "user", "password_env", "password_file", "passfile", "sslmode", "connect_timeout"}
    if not isinstance(led, dict) or sorted(set(led) - {"path"} - url_keys) or ("path" in led and "url" in led):
        raise UsageError(f"configuration {path}: [ledger] must be a table with `path` (SQLite) or `url` (PostgreSQL,"
                         " with user and password_env, password_file or passfile: docs/postgres.md)")
    ledger: Path | Connection | None = None
    if led.get("url") is not None:
        from release.dp.ledger_pg import connection_of

        ledger = connection_of(led, path)
    if led.get("path") is not None:
        if not isinstance(led["path"], str) or not led["path"]:
            raise UsageError(f"configuration {path}: ledger.path must be a path string")
        p = Path(led["path"])
        ledger = p if p.is_absolute() else path.parent / p
    srcs = doc.get("sources", {})
    if not isinstance(srcs, dict):
        raise UsageError(f"configuration {path}: [sources] must hold one table per source ([sources.NAME])")
    return BudgetConfig(config=path, ledger=ledger, sources={n: _source(path, n, t) for n, t in srcs.items()})


def _same_file(a: Path, b: Path) -> bool:
    return a.absolute().resolve() == b.absolute().resolve()


def ledger_of(cfg: BudgetConfig, given: str | None, policy_ledger: Path | None = None) -> Path:
    """The deployment's ledger; `--ledger` (and a policy's budget.ledger) may only repeat it, except in test mode."""
    from release.context import test_mode

    if cfg.ledger is None:
        if given and test_mode():
            return Path(given)
        raise UsageError(f"{cfg.where()} names no budget ledger: DP releases need `[ledger] path = ...` in"
                         " release.toml (the one ledger of the deployment)")
    if not isinstance(cfg.ledger, Path):  # PostgreSQL: the configuration's server, never one a run names
        if given and not test_mode():
            raise UsageError(f"--ledger {given}: the deployment's ledger is {cfg.ledger.display} ({cfg.where()});"
                             " a run cannot choose another")
        if policy_ledger is not None and not test_mode():
            raise PolicyError(f"budget.ledger names {policy_ledger}, not the deployment's ledger {cfg.ledger.display}:"
                              " the ledger's location is the configuration's; remove budget.ledger from the policy")
        return Path(given) if given else cfg.ledger  # type: ignore[return-value]
    if given and not _same_file(Path(given), cfg.ledger):
        if test_mode():
            return Path(given)
        raise UsageError(f"--ledger {given} is not the deployment's ledger {cfg.ledger} ({cfg.where()}): the ledger's"
                         " location is the configuration's, a run cannot choose another (that would be a fresh budget)")
    if policy_ledger is not None and not _same_file(policy_ledger, cfg.ledger) and not test_mode():
        raise PolicyError(f"budget.ledger names {policy_ledger}, not the deployment's ledger {cfg.ledger}: the"
                          " ledger's location is the configuration's; remove budget.ledger from the policy")
    return cfg.ledger


def source_of(policy: Policy, cfg: BudgetConfig) -> Source:
    """The registered source a DP policy names; an unregistered one is a policy error."""
    b = policy.budget
    assert b is not None
    if b.source is None:
        # Checked when a run starts, not when a policy parses: bundles of older policies must still load.
        raise PolicyError("budget.source: a DP policy names the internal source it spends the budget of (a"
                          f" source registered in release.toml [sources.NAME]; {cfg.where()} registers"
                          f" {', '.join(sorted(cfg.sources)) or 'none'})")
    src = cfg.sources.get(b.source)
    if src is None:
        known = ", ".join(sorted(cfg.sources)) or "none"
        raise PolicyError(f"budget.source {b.source!r} is not a source registered by the deployment ({cfg.where()};"
                          f" registered: {known}): add [sources.{b.source}] with its privacy unit and ceilings")
    return src


def check_policy_against(policy: Policy, src: Source) -> None:
    """A policy cannot raise a ceiling or go below the floor; its period is the source's."""
    b = policy.budget
    assert b is not None
    problems = []
    for m in MEASURES:
        for w, mine, ceiling in (("release", getattr(b, f"{m}_per_release", None), src.per_release[m]),
                                 ("period", getattr(b, f"{m}_per_period", None), src.per_period[m])):
            if mine is not None and ceiling is not None and mine > ceiling * (1 + 1e-12):
                problems.append(f"budget.{m}_per_{w} {mine:g} raises the ceiling {ceiling:g} of source {src.name}"
                                " (a policy may only lower it)")
    measure = b.measure
    spent = b.rho if measure == "rho" else b.epsilon
    if src.per_period[measure] is None:
        problems.append(f"source {src.name} sets no {measure}_per_period ceiling: a {measure} policy cannot spend it")
    if spent is not None and spent < src.min_per_release[measure]:
        problems.append(f"budget.{measure} {spent:g} is below the floor {src.min_per_release[measure]:g} of source"
                        f" {src.name} (min_{measure}_per_release): the noise would bury every count")
    if b.delta is not None and src.per_period["delta"] is None:
        problems.append(f"source {src.name} sets no delta_per_period ceiling: key discovery (delta) cannot spend it")
    if b.period_days is not None and b.period_days != src.period_days:
        problems.append(f"budget.period_days {b.period_days} differs from the source's rolling period"
                        f" {src.period_days} days (remove it: the period is the deployment's)")
    if problems:
        raise PolicyError(problems[0], details=problems[1:])


# The bundled DP policies name these sources; the ceilings are the deployment's (a policy may only lower them).
DEMO_BUDGET = """
# Written by `release demo` (release.dp.demo): the one budget ledger and the registered sources.
[ledger]
path = "ledger.sqlite"

[sources.crime-records]
description = "the records management system's occurrences (victims are the privacy unit)"
unit = "person"
epsilon_per_release = 2.0
epsilon_per_period = 20.0
delta_per_period = 1e-6
period_days = 365

[sources.use-of-force-records]
description = "use-of-force reports (persons subjected to force are the privacy unit)"
unit = "person"
epsilon_per_release = 1.5
epsilon_per_period = 15.0
period_days = 365

[sources.enforcement-records]
description = "enforcement actions, one row per person per action (persons are the privacy unit)"
unit = "person"
epsilon_per_release = 1.0
epsilon_per_period = 10.0
period_days = 365
"""
