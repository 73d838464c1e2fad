"""Small builders shared by the anonymize tests."""

from __future__ import annotations

from typing import Any

import pandas as pd

from release.anonymize.step import KAnonymityStep


def step(**kw: Any) -> KAnonymityStep:
    return KAnonymityStep.model_validate({"type": "k-anonymity", **kw})


class Ctx:
    """The part of StepContext the step uses."""

    def __init__(self) -> None:
        self.policy_path = None
        self.internal: dict[str, Any] = {}


def apply(s: KAnonymityStep, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any], Ctx]:
    ctx = Ctx()
    out, ev = s.apply(frame, ctx)  # type: ignore[arg-type]
    return out, ev, ctx
