"""Privacy-preserving release engine: policy -> plan -> steps -> assessment -> gate -> bundle."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load_policy", "compile_plan", "run_release", "check_bundle", "__version__"]


def __getattr__(name: str):  # lazy: `release --help` should not import pandas
    if name == "load_policy":
        from release.policy.loader import load_policy

        return load_policy
    if name == "compile_plan":
        from release.plan import compile_plan

        return compile_plan
    if name == "run_release":
        from release.engine import run_release

        return run_release
    if name == "check_bundle":
        from release.check import check_bundle

        return check_bundle
    raise AttributeError(name)
