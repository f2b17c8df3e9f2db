from __future__ import annotations

import pytest

from ansible_collections.immune.canary.plugins.module_utils._stats import percentile


@pytest.mark.parametrize('values, pct, expected', [
    # Reference values from numpy.percentile(values, pct) (method "linear").
    ([15, 20, 35, 40, 50], 40, 29.0),
    ([15, 20, 35, 40, 50], 90, 46.0),
    ([1, 2, 3, 4], 50, 2.5),
    ([3, 1, 2], 0, 1.0),
    ([3, 1, 2], 100, 3.0),
    ([7], 95, 7.0),
    ([10, 20, 30, 40, 50, 60], 95, 57.5),
])
def test_percentile_matches_linear_interpolation(values, pct, expected):
    assert percentile(values, pct) == pytest.approx(expected)


def test_percentile_of_nothing_is_none():
    assert percentile([], 50) is None


@pytest.mark.parametrize('pct', [-1, 100.5])
def test_percentile_rejects_out_of_range(pct):
    with pytest.raises(ValueError, match='between 0 and 100'):
        percentile([1, 2], pct)
