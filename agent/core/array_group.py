"""Optional groups of named arrays in a bundle's ``rapp.npz``: all stored, or none."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def array_group(
    arrays: Mapping[str, np.ndarray], keys: Mapping[str, str], error: type[Exception]
) -> dict[str, np.ndarray] | None:
    """``{name: float64 array}`` for ``keys`` (name → key), None when none of the keys is
    stored; ``error`` naming the missing keys when only some are."""
    if not any(key in arrays for key in keys.values()):
        return None
    missing = [key for key in keys.values() if key not in arrays]
    if missing:
        raise error(f"rapp.npz lacks {', '.join(missing)}; rebuild the bundle")
    return {name: np.asarray(arrays[key], dtype=np.float64) for name, key in keys.items()}
