# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Small statistics shared by the probe and the health gate (pure Python)."""

from __future__ import annotations

import math


def percentile(values, pct):
    """Percentile by linear interpolation between closest ranks.

    Matches numpy's default ("linear") method; ``pct`` is in [0, 100].
    Returns None for an empty sequence.
    """
    if not 0 <= pct <= 100:
        raise ValueError('percentile must be between 0 and 100, got %r' % (pct,))
    data = sorted(values)
    if not data:
        return None
    if len(data) == 1:
        return float(data[0])
    rank = (len(data) - 1) * pct / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(data[int(rank)])
    return data[low] + (data[high] - data[low]) * (rank - low)
