"""A small policy and matching records for pipeline tests that need no synthetic city."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

MINI_POLICY: dict[str, Any] = {
    "version": 1,
    "dataset": {"name": "mini", "title": "Mini test dataset", "publisher": "test"},
    "jurisdiction": {"bbox": [-79.64, 43.58, -79.11, 43.86], "crs": 2952},
    "input": {
        "record_id": "record_id",
        "columns": {
            "record_id": {"type": "string", "role": "record-id"},
            "occurred": {"type": "datetime", "role": "time"},
            "category": {"type": "category", "role": "quasi-identifier", "categories": ["Assault", "Robbery", "Theft"]},
            "age": {"type": "integer", "role": "quasi-identifier", "min": 0, "max": 120},
            "division": {"type": "string", "role": "area"},
            "latitude": {"type": "float", "role": "latitude", "required": False},
            "longitude": {"type": "float", "role": "longitude", "required": False},
            "victim_name": {"type": "string", "role": "direct-identifier"},
            "person_id": {"type": "string", "role": "privacy-unit"},
        },
    },
    "steps": [
        {"type": "drop", "roles": ["direct-identifier"]},
        {"type": "pseudonymize", "columns": ["person_id"], "method": "random"},
        {"type": "generalize", "column": "occurred", "time": "month"},
        {"type": "generalize", "column": "age", "bins": [0, 18, 35, 65, 121]},
    ],
    "outputs": [{"name": "records", "kind": "records",
                 "columns": ["occurred", "category", "age", "division"]}],
}


def mini_policy(**overrides: Any) -> dict[str, Any]:
    p = copy.deepcopy(MINI_POLICY)
    p.update(overrides)
    return p


def write_policy(path: Path, policy: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    return path


def mini_records(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "record_id": [f"R{i:06d}" for i in range(n)],
        "occurred": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24, n), unit="h"),
        "category": rng.choice(["Assault", "Robbery", "Theft"], n),
        "age": rng.integers(0, 100, n),
        "division": rng.choice(["D11", "D12", "D14"], n),
        "latitude": rng.uniform(43.62, 43.80, n).round(6),
        "longitude": rng.uniform(-79.55, -79.20, n).round(6),
        "victim_name": [f"Person {i}" for i in range(n)],
        "person_id": [f"P{i % 50:04d}" for i in range(n)],
    }).assign(occurred=lambda d: d["occurred"].dt.strftime("%Y-%m-%dT%H:%M:%S"))
