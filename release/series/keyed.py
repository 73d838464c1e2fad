"""Per-record randomness that repeats: uniforms keyed by (registered source, record id, purpose).

A record's mask is a pseudo-random function of the record, never a fresh draw: released again, in
this dataset or any other drawn from the same source, it lands on the same point, so averaging the
releases learns nothing. The key is HKDF-SHA256 of the deployment secret with the source and the
purpose as context (the derivation style of `pseudonymize`), so no two sources or purposes share
values. Vectorized in two C passes, never a Python loop over records:

1. each record id (as text) is compressed to 128 bits by two keyed SipHash-2-4 runs
   (`pandas.util.hash_array`, keys from the HKDF output);
2. those blocks are encrypted with AES-256 (one ECB call over the whole buffer, a block cipher used
   as a pseudo-random function on distinct inputs), keyed by the HKDF output; each output block
   gives two uniforms of 53 bits.

Being a function of each record alone, it gives the same value in one batch, many batches or a
Spark partition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_TWO53 = 1.0 / 9007199254740992.0


def mask_key(secret: bytes, source: str, purpose: str) -> bytes:
    """64 bytes: AES-256 key, then two SipHash keys; HKDF-SHA256(secret, "release-mask" | source | purpose)."""
    info = b"\0".join([b"release-mask", source.encode(), purpose.encode()])
    return HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=info).derive(secret)


def record_text(ids: pd.Series) -> np.ndarray:
    """Record ids as text, the same whether a policy reads them as integers or strings (123 and '123')."""
    if pd.api.types.is_integer_dtype(ids.dtype):
        return ids.astype("int64").astype(str).to_numpy(dtype=object)
    if pd.api.types.is_float_dtype(ids.dtype):
        v = ids.to_numpy(dtype=np.float64)
        whole = np.isfinite(v) & (v == np.floor(v))
        out = ids.astype(str).to_numpy(dtype=object)
        out[whole] = v[whole].astype(np.int64).astype(str)
        return out
    return ids.astype(str).to_numpy(dtype=object)


def _sip_key(b: bytes) -> str:
    # pandas takes the SipHash key as 16 characters encoded with the values' encoding: ASCII keeps one
    # byte per character (112 key bits each; the AES pass carries the secrecy).
    return "".join(chr(x & 0x7F) for x in b)


def keyed_uniforms(ids: pd.Series, key: bytes, tweak: np.ndarray | None = None) -> np.ndarray:
    """(n, 2) uniforms in [0, 1), a keyed function of each record id (and of its `tweak` value, if given).

    `tweak` (float64 per record) folds per-record parameters into the input, e.g. a record's widened
    radius: when it changes the record gets an independent draw rather than a rescaled one.
    """
    n = len(ids)
    if n == 0:
        return np.zeros((0, 2), dtype=np.float64)
    text = record_text(ids)
    h1 = pd.util.hash_array(text, encoding="utf8", hash_key=_sip_key(key[32:48]), categorize=False)
    h2 = pd.util.hash_array(text, encoding="utf8", hash_key=_sip_key(key[48:64]), categorize=False)
    if tweak is not None:
        h2 = h2 ^ np.ascontiguousarray(tweak, dtype="<f8").view("<u8")
    block = np.empty((n, 2), dtype="<u8")
    block[:, 0], block[:, 1] = h1, h2
    enc = Cipher(algorithms.AES(key[:32]), modes.ECB()).encryptor()
    out = enc.update(block.tobytes()) + enc.finalize()
    words = np.frombuffer(out, dtype="<u8").reshape(n, 2)
    return (words >> np.uint64(11)).astype(np.float64) * _TWO53
