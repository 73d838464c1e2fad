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
import pyarrow as pa
import pyarrow.compute as pc
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

    def _text_pseudonyms(self, col: pd.Series, key: bytes) -> pd.Series:
        """The same HMAC-SHA256 pseudonyms of a text column, computed once per distinct value in Arrow.

        The HMAC's inner and outer SHA-256 states are keyed once and copied per value (RFC 2104: the
        same digest as hmac.digest, at about half its cost per call); the hex text, the prefix and the
        mapping back to rows are Arrow and NumPy kernels.
        """
        arr = pa.chunked_array(pa.array(col, from_pandas=True, type=pa.large_string())
                               if not isinstance(col.dtype, pd.StringDtype) or col.dtype.storage != "pyarrow"
                               else col.array._pa_array).cast(pa.large_string())  # noqa: SLF001
        uniq = pc.drop_null(pc.unique(arr))
        if isinstance(uniq, pa.ChunkedArray):
            uniq = uniq.combine_chunks()
        k = key if len(key) <= 64 else hashlib.sha256(key).digest()
        k = k.ljust(64, b"\0")
        inner = hashlib.sha256(bytes(x ^ 0x36 for x in k)).copy
        outer = hashlib.sha256(bytes(x ^ 0x5C for x in k)).copy

        def digest(value: bytes) -> bytes:
            i = inner()
            i.update(value)
            o = outer()
            o.update(i.digest())
            return o.digest()

        raw = b"".join([digest(v) for v in uniq.cast(pa.large_binary()).to_pylist()])
        d = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 32)
        hexd = np.empty((len(d), 64), dtype=np.uint8)
        alphabet = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
        hexd[:, 0::2] = alphabet[d >> 4]
        hexd[:, 1::2] = alphabet[d & 15]
        n = self.length
        body = np.ascontiguousarray(hexd[:, :n]).tobytes()
        offsets = np.arange(0, n * len(d) + 1, n, dtype=np.int64)
        txt = pa.Array.from_buffers(pa.large_string(), len(d), [None, pa.py_buffer(offsets), pa.py_buffer(body)])
        if self.prefix:
            txt = pc.binary_join_element_wise(pa.scalar(self.prefix, pa.large_string()), txt,
                                              pa.scalar("", pa.large_string()))
        mapped = pc.take(txt, pc.index_in(arr, value_set=uniq))
        return pd.Series(pd.arrays.ArrowStringArray(mapped.cast(pa.large_string())), index=col.index, name=col.name)

    def apply(self, frame: pd.DataFrame, ctx: StepContext) -> tuple[pd.DataFrame, dict[str, Any]]:
        out = frame.copy()
        secret = self._key(ctx) if self.method == "hmac" else None
        for c in self.columns:
            # "random": a key drawn now and forgotten; "hmac": the column's own key derived from the secret.
            key = (self.column_key(secret, ctx.policy.dataset.name, c) if secret is not None
                   else self.random_key(ctx, c))
            col = out[c]
            if isinstance(col.dtype, pd.StringDtype):
                out[c] = self._text_pseudonyms(col, key)
                continue
            # Pseudonyms are per distinct value, so the HMAC runs once per value, not per row.
            codes, uniques = pd.factorize(col, use_na_sentinel=True)
            # hmac.digest is the one-shot C path: the same HMAC-SHA256, a fraction of hmac.new's cost.
            mapped = [self.prefix + hmac.digest(key, str(u).encode(), "sha256").hex()[: self.length]
                      for u in uniques]
            arr = np.asarray(mapped + [None], dtype=object)
            out[c] = pd.array(arr[np.where(codes < 0, len(mapped), codes)], dtype="string")
        return out, {"columns": list(self.columns), "method": self.method,
                     "key_context": None if secret is None else self.context(ctx.policy.dataset.name)}
