"""`pseudonymize`: replace identifiers by keyed HMAC-SHA256 pseudonyms or fresh random ids.

The deployment secret is never the HMAC key itself: each (dataset, column) gets its own key,
HKDF-SHA256(secret, info = "release-pseudonym" | dataset | column). Two datasets therefore share no
pseudonym, and cannot be joined on them, unless both policies name the same `link_group`, which then
takes the dataset's place in the context (and which the privacy office approves with the policy).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import Field, model_validator

from release.context import StepContext
from release.errors import UsageError
from release.policy.base import ColumnSpec, ColumnType, Role, Schema, StepConfig
from release.registry import register_step

_MIN_SECRET_BYTES = 16


@register_step
class PseudonymizeStep(StepConfig):
    """Replace identifier values so records stay linkable within (hmac) or only inside (random) a release."""

    type: Literal["pseudonymize"] = "pseudonymize"
    row_local: ClassVar[bool] = True
    columns: tuple[str, ...]
    "Columns whose values are replaced."
    method: Literal["hmac", "random"] = "hmac"
    "hmac: stable keyed pseudonym (linkable across releases with the same key); random: new ids every release."
    secret_env: str | None = None
    "Environment variable holding the HMAC key (hmac only). Never written to the bundle."
    secret_file: str | None = None
    "File holding the HMAC key (hmac only). Never written to the bundle."
    length: int = 16
    "Hex characters kept of each pseudonym."
    prefix: str = ""
    "Text put before every pseudonym (e.g. 'GO-')."
    link_group: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    "Declared linkage: datasets naming the same link group share pseudonyms of a column; without it none do."

    @model_validator(mode="after")
    def _secret(self) -> PseudonymizeStep:
        if self.method == "hmac" and not (self.secret_env or self.secret_file):
            raise ValueError("hmac pseudonyms need secret_env or secret_file")
        if self.method == "random" and (self.secret_env or self.secret_file):
            raise ValueError("random ids take no secret")
        if self.method == "random" and self.link_group:
            raise ValueError("random ids link nothing: link_group needs method hmac")
        if not 8 <= self.length <= 64:
            raise ValueError("length must be between 8 and 64")
        return self

    def referenced_columns(self) -> list[str]:
        return list(self.columns)

    def schema_after(self, schema: Schema) -> Schema:
        out = dict(schema)
        for c in self.columns:
            role = Role.other if out[c].role == Role.direct_identifier else out[c].role
            out[c] = ColumnSpec(type=ColumnType.string, role=role, required=out[c].required,
                                description=f"pseudonym ({self.method})")
        return out

    def describe(self) -> str:
        return f"pseudonymize {', '.join(self.columns)} ({self.method})"

    def _key(self, ctx: StepContext) -> bytes:
        if self.secret_env:
            val = os.environ.get(self.secret_env)
            if not val:
                raise UsageError(f"pseudonymize: environment variable {self.secret_env} is not set (the HMAC key)")
            key = val.encode()
        else:
            p = ctx.resolve(self.secret_file or "")
            try:
                key = Path(p).read_bytes().strip()
            except OSError as e:
                raise UsageError(f"pseudonymize: cannot read key file {p}: {e.strerror}") from None
        if len(key) < _MIN_SECRET_BYTES:
            raise UsageError(f"pseudonymize: the HMAC key must be at least {_MIN_SECRET_BYTES} bytes")
        return key

    def context(self, dataset: str) -> str:
        """What the column keys are derived for: the link group when declared, else the dataset alone."""
        return f"link-group:{self.link_group}" if self.link_group else f"dataset:{dataset}"

    def column_key(self, secret: bytes, dataset: str, column: str) -> bytes:
        """HKDF-SHA256 of the deployment secret with (dataset or link group, column) as context."""
        info = b"\0".join([b"release-pseudonym", self.context(dataset).encode(), column.encode()])
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)

    def random_key(self, ctx: StepContext, column: str) -> bytes:
        """"random": a key for this run only, forgotten with it. Derived from the run key (the same in
        every batch of the run), or drawn now when the step runs outside the engine."""
        if not ctx.run_key:
            return secrets.token_bytes(32)
        return hmac.new(ctx.run_key, b"\0".join([b"release-pseudonym-random", column.encode()]), hashlib.sha256).digest()

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        out = frame.copy()
        secret = self._key(ctx) if self.method == "hmac" else None
        for c in self.columns:
            # "random": a key drawn now and forgotten; "hmac": the column's own key derived from the secret.
            key = (self.column_key(secret, ctx.policy.dataset.name, c) if secret is not None
                   else self.random_key(ctx, c))
            col = out[c]
            # Pseudonyms are per distinct value, so the HMAC runs once per value, not per row.
            codes, uniques = pd.factorize(col, use_na_sentinel=True)
            # hmac.digest is the one-shot C path: the same HMAC-SHA256, a fraction of hmac.new's cost.
            mapped = [self.prefix + hmac.digest(key, str(u).encode(), "sha256").hex()[: self.length]
                      for u in uniques]
            arr = np.asarray(mapped + [None], dtype=object)
            out[c] = pd.array(arr[np.where(codes < 0, len(mapped), codes)], dtype="string")
        return out, {"columns": list(self.columns), "method": self.method,
                     "key_context": None if secret is None else self.context(ctx.policy.dataset.name)}
