from __future__ import annotations

import math
import random

import pytest

from ansible_collections.immune.canary.plugins.module_utils._statistics import (
    binomial_greater,
    fisher_greater,
    format_p,
    mann_whitney_greater,
    normal_sf,
    proportion_greater,
    rank_with_ties,
    two_proportion_z_greater,
)


@pytest.mark.parametrize('z, expected', [
    # Standard normal table values (e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.1).
    (0.0, 0.5),
    (1.6448536, 0.05),
    (1.959964, 0.025),
    (2.326348, 0.01),
    (-1.959964, 0.975),
])
def test_normal_survival_matches_table(z, expected):
    assert normal_sf(z) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize('x1, n1, x2, n2, expected', [
    # Fisher's "lady tasting tea", table [[3, 1], [1, 3]]: P = (16 + 1) / C(8, 4) = 17/70.
    (3, 4, 1, 4, 17 / 70.0),
    # Perfect separation [[4, 0], [0, 4]]: only the observed table, 1/C(8, 4) = 1/70.
    (4, 4, 0, 4, 1 / 70.0),
    # Observed the smallest possible x1 (0): every table is at least as extreme.
    (0, 4, 4, 4, 1.0),
    # [[1, 9], [0, 10]]: P(X >= 1) = 1 - C(1,0)C(19,10)/C(20,10) = 1 - 92378/184756 = 0.5.
    (1, 10, 0, 10, 0.5),
    # [[2, 3], [0, 5]]: P(X=2) = C(2,2)C(8,3)/C(10,5) = 56/252.
    (2, 5, 0, 5, 56 / 252.0),
])
def test_fisher_exact_one_sided(x1, n1, x2, n2, expected):
    assert fisher_greater(x1, n1, x2, n2) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize('x1, n1, x2, n2, z, p', [
    # pooled p = 0.2, se = sqrt(0.2 * 0.8 * (1/100 + 1/100)) = 0.0565685; z = 0.2 / se = 3.5355339;
    # P(Z > 3.5355339) = 0.000203476 (normal table).
    (30, 100, 10, 100, 3.5355339, 0.000203476),
    # pooled p = 60/400 = 0.15, se = sqrt(0.15 * 0.85 * 0.01) = 0.0357071; z = 0.1 / se = 2.8005602; P = 0.0025509.
    (40, 200, 20, 200, 2.8005602, 0.0025509),
    # Canary better than baseline: z negative, p large. z = -2.8005602, P(Z > z) = 0.9974491.
    (20, 200, 40, 200, -2.8005602, 0.9974491),
])
def test_two_proportion_z(x1, n1, x2, n2, z, p):
    got_z, got_p = two_proportion_z_greater(x1, n1, x2, n2)
    assert got_z == pytest.approx(z, rel=1e-6)
    assert got_p == pytest.approx(p, rel=1e-4)


def test_proportion_uses_fisher_for_small_counts_and_z_for_large():
    assert proportion_greater(3, 4, 1, 4)[1] == 'fisher'
    assert proportion_greater(3, 4, 1, 4)[0] == pytest.approx(17 / 70.0)
    assert proportion_greater(30, 100, 10, 100) == (pytest.approx(0.000203476, rel=1e-4), 'z')
    assert proportion_greater(0, 0, 1, 10) == (1.0, 'none')


@pytest.mark.parametrize('x, n, rate, expected', [
    # 1 - sum_{k<3} C(10,k) 0.1^k 0.9^(10-k) = 1 - 0.3486784401 - 0.3874204890 - 0.1937102445.
    (3, 10, 0.1, 0.0701908264),
    # P(X >= 1) = 1 - 0.99^100 = 0.6339676587.
    (1, 100, 0.01, 0.6339676587),
    # P(X = 5 | n=5, p=0.5) = 1/32.
    (5, 5, 0.5, 0.03125),
    (0, 50, 0.2, 1.0),
])
def test_binomial_tail(x, n, rate, expected):
    assert binomial_greater(x, n, rate) == pytest.approx(expected, rel=1e-9)


def test_binomial_tail_large_n_is_fast_and_sane():
    # 184 of 1000 at a 1 % limit is overwhelming evidence; 10 of 1000 is none.
    assert binomial_greater(184, 1000, 0.01) < 1e-100
    assert binomial_greater(10, 1000, 0.01) > 0.4


def test_ranks_average_ties():
    ranks, ties = rank_with_ties([2, 2, 3, 4, 1, 1, 2, 3])
    assert ranks == [4.0, 4.0, 6.5, 8.0, 1.5, 1.5, 4.0, 6.5]
    assert sorted(ties) == [2, 2, 3]


@pytest.mark.parametrize('canary, baseline, u, p, method', [
    # Complete separation: U = n1*n2 = 9, P = 1/C(6,3) = 1/20.
    ([4, 5, 6], [1, 2, 3], 9.0, 0.05, 'exact'),
    # U = 6 of 6, P = 1/C(5,2) = 0.1.
    ([3, 4, 5], [1, 2], 6.0, 0.1, 'exact'),
    ([1, 2, 3], [4, 5, 6], 0.0, 1.0, 'exact'),
    # [1, 4] vs [2, 3]: U = 2; the 6 arrangements have U = 0,1,2,2,3,4 -> P(U >= 2) = 4/6.
    ([1, 4], [2, 3], 2.0, 4 / 6.0, 'exact'),
    # With ties, normal approximation, tie and continuity correction, by hand:
    # ranks of canary 4 + 4 + 6.5 + 8 = 22.5, U = 22.5 - 10 = 12.5; ties 2,3,2 -> sum(t^3 - t) = 36;
    # var = 4*4/12 * (9 - 36/56) = 11.142857; z = (12.5 - 8 - 0.5)/sqrt(var) = 1.198289; P(Z > z) = 0.1154022.
    ([2, 2, 3, 4], [1, 1, 2, 3], 12.5, 0.1154022, 'normal'),
])
def test_mann_whitney_reference_values(canary, baseline, u, p, method):
    got_u, got_p, got_method = mann_whitney_greater(canary, baseline)
    assert got_u == u
    assert got_p == pytest.approx(p, rel=1e-5)
    assert got_method == method


def test_mann_whitney_exact_agrees_with_normal_for_larger_samples():
    rnd = random.Random(7)
    canary = [rnd.gauss(1.0, 1.0) for _value in range(20)]
    baseline = [rnd.gauss(0.0, 1.0) for _value in range(20)]
    _u, exact, _m = mann_whitney_greater(canary, baseline, exact=True)
    _u, normal, _m = mann_whitney_greater(canary, baseline, exact=False)
    assert exact == pytest.approx(normal, abs=0.01)


def test_mann_whitney_normal_by_hand_with_many_ties():
    # 10..29 occur in both samples: 20 tie groups of size 2.
    canary = list(range(10, 40))
    baseline = list(range(0, 30))
    u, p, method = mann_whitney_greater(canary, baseline)
    assert method == 'normal'
    # U counts pairs where the canary is larger, ties as 1/2: counted directly.
    wins = sum(1 for c in canary for b in baseline if c > b)
    ties = sum(1 for c in canary for b in baseline if c == b)
    assert (wins, ties) == (690, 20)
    assert u == 700.0
    variance = 30 * 30 / 12.0 * (61 - 20 * 6 / (60.0 * 59))
    z = (700 - 450 - 0.5) / math.sqrt(variance)
    assert p == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-12)


def test_empty_samples_are_not_evidence():
    assert mann_whitney_greater([], [1, 2]) == (None, 1.0, 'none')


@pytest.mark.parametrize('p, text', [(0.0004, 'p<0.001'), (0.0421, 'p=0.042'), (None, 'p=n/a')])
def test_format_p(p, text):
    assert format_p(p) == text


def test_invalid_counts_are_refused():
    with pytest.raises(ValueError, match='0 <= x <= n'):
        fisher_greater(5, 4, 0, 4)
