"""Seeded 64-bit hashes of table rows: the same on every machine, however the table is cut into files.

The Dask engine decides row by row with them where no process sees the whole
table: which side of the split a customer is on (preprocessing), which rows a
stratified sample keeps (models.sample_on_dask).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def seeded_hash(keys: pd.DataFrame | pd.Series, seed: int) -> np.ndarray:
    """A uint64 hash of each row of `keys` that changes with the seed; for 64-bit integers it is a
    bijection, so distinct numbers never share a hash."""
    # hash_pandas_object's key seeds the hashing of text only; numbers are hashed by a fixed mixing
    # function (a bijection of 64-bit values), so the seed is mixed in again afterwards, as the hash
    # of a text (the hash of the number `seed` would cancel the hash of a row number equal to it).
    hashed = pd.util.hash_pandas_object(keys, index=False, hash_key=f"{seed:016d}"[-16:]).to_numpy()
    salt = pd.util.hash_pandas_object(pd.Series([f"seed {seed}"]), index=False).to_numpy()[0]
    return pd.util.hash_pandas_object(pd.Series(hashed ^ salt), index=False).to_numpy()


def row_numbers(offset: int, count: int) -> pd.Series:
    """The numbers of `count` rows starting at row `offset` of the whole table."""
    return pd.Series(np.arange(offset, offset + count, dtype=np.uint64))
