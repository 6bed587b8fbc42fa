"""Seeded 64-bit hashes of rows: the same key for the same values on every machine, engine and partitioning.

The split, every stratified sample (stages.lib.data.sampling) and the Dask
engine's choice of the worker that trains on a row are all a row's seeded hash,
so none of them depends on the order in which rows are read or where.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def seeded_hash(keys: pd.DataFrame | pd.Series, seed: int, purpose: str) -> np.ndarray:
    """A uint64 hash of each row of `keys` that changes with the seed and the purpose; for 64-bit
    integers it is a bijection, so distinct row numbers never share a key."""
    # hash_pandas_object's key seeds the hashing of text only; numbers are hashed by a fixed mixing
    # function (a bijection of 64-bit values), so the seed is mixed in again afterwards, as the hash
    # of a text (the hash of the number `seed` would cancel the hash of a row number equal to it).
    hashed = pd.util.hash_pandas_object(keys, index=False, hash_key=f"{seed:016d}"[-16:]).to_numpy()
    salt = pd.util.hash_pandas_object(pd.Series([f"{purpose} {seed}"]), index=False).to_numpy()[0]
    return pd.util.hash_pandas_object(pd.Series(hashed ^ salt), index=False).to_numpy()


def row_numbers(offset: int, count: int) -> pd.Series:
    """The numbers of `count` rows starting at row `offset` of the whole table."""
    return pd.Series(np.arange(offset, offset + count, dtype=np.uint64))
