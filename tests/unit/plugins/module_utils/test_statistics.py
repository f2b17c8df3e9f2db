"""Every test statistic of _statistics against scipy's reference values (scipy is a test-only dependency)."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats

from ansible_collections.immune.canary.plugins.module_utils._statistics import (
    OddsMixture,
    binned_percentile,
    binomial_greater,
    chernoff_tail,
    format_number,
    format_p,
    hypergeometric_pmfs,
    log_likelihood_ratio,
    log_spaced_edges,
    odds_grid,
    percentile,
    stratified_tail,
)

# -- percentile (the warm-up probe's rounds) ----------------------------------------------


@pytest.mark.parametrize('values, pct, expected', [
    ([1, 2, 3, 4], 50, 2.5),
    ([10], 90, 10.0),
    ([5, 1, 4, 2, 3], 100, 5.0),
    ([5, 1, 4, 2, 3], 0, 1.0),
    ([], 50, None),
])
def test_percentile_interpolates_like_numpy(values, pct, expected):
    assert percentile(values, pct) == expected


def test_percentile_matches_scipy_on_random_data():
    rnd = random.Random(3)
    values = [rnd.lognormvariate(3, 1) for _value in range(101)]
    for pct in (1, 50, 90, 95, 99):
        assert percentile(values, pct) == pytest.approx(stats.scoreatpercentile(values, pct), rel=1e-12)
    with pytest.raises(ValueError):
        percentile(values, 101)


# -- exact tails -------------------------------------------------------------------------------


@pytest.mark.parametrize('x, n, rate', [
    (3, 10, 0.1), (1, 100, 0.01), (5, 5, 0.5), (0, 50, 0.2), (16, 600, 0.02), (30, 150, 0.05), (184, 1000, 0.01), (10, 1000, 0.01),
])
def test_binomial_tail_matches_scipy(x, n, rate):
    expected = stats.binom.sf(x - 1, n, rate)
    assert binomial_greater(x, n, rate) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_binomial_tail_edges():
    assert binomial_greater(0, 10, 0.0) == 1.0
    assert binomial_greater(1, 10, 0.0) == 0.0
    assert binomial_greater(10, 10, 1.0) == 1.0
    with pytest.raises(ValueError, match='0 <= x <= n'):
        binomial_greater(11, 10, 0.5)
    with pytest.raises(ValueError, match='rate must be within'):
        binomial_greater(1, 10, 1.5)


def test_hypergeometric_pmfs_match_scipy():
    # scipy's hypergeom(M=population, n=successes, N=drawn)
    assert hypergeometric_pmfs(40, 12, 300, 12) == pytest.approx([stats.hypergeom.pmf(j, 300, 12, 40) for j in range(13)], rel=1e-10)
    assert hypergeometric_pmfs(9, 8, 10, 9)[:7] == [0.0] * 7  # at least 7 of the 8 are drawn
    with pytest.raises(ValueError, match='0 <= drawn, successes <= population'):
        hypergeometric_pmfs(11, 1, 10, 1)


def _reference_stratified_tail(strata, x):
    """P(sum of hypergeometric counts >= x) by scipy's pmfs and a full convolution."""
    dist = [1.0]
    for drawn, successes, population in strata:
        pmf = stats.hypergeom.pmf(range(min(drawn, successes) + 1), population, successes, drawn)
        new = [0.0] * (len(dist) + len(pmf) - 1)
        for s, mass in enumerate(dist):
            for j, p in enumerate(pmf):
                new[s + j] += mass * p
        dist = new
    return sum(dist[x:])


@pytest.mark.parametrize('strata, x', [
    ([(75, 16, 1500), (80, 14, 1500), (70, 15, 1500)], 12),
    ([(600, 130, 12000)], 16),
    ([(10, 4, 20), (12, 8, 30), (8, 5, 9)], 12),
    ([(5, 2, 10)], 0),
    ([(30, 9, 90)], 9),  # the lab: 9 errors, all the canary's, while it has a third of the traffic
    ([(40, 3, 400), (40, 5, 400)], 4),
])
def test_stratified_tail_matches_a_full_convolution(strata, x):
    p, method = stratified_tail(strata, x)
    assert method == 'exact'
    assert p == pytest.approx(_reference_stratified_tail(strata, x), rel=1e-9, abs=1e-300)


def test_one_stratum_is_fishers_exact_test():
    # canary 12 bad of 100, baseline 20 of 1000
    p, _method = stratified_tail([(100, 32, 1100)], 12)
    assert p == pytest.approx(stats.fisher_exact([[12, 88], [20, 980]], alternative='greater')[1], rel=1e-9)


def test_stratified_tail_beyond_its_work_limit_is_an_upper_bound():
    strata = [(400, 60, 4000), (420, 70, 4200), (380, 50, 3800)]
    exact, method = stratified_tail(strata, 35, max_work=10 ** 9)
    assert method == 'exact'
    assert exact == pytest.approx(_reference_stratified_tail(strata, 35), rel=1e-8)
    bound, method = stratified_tail(strata, 35, max_work=100)
    assert method == 'chernoff'
    assert exact < bound < 100 * exact


def test_chernoff_bound_by_hand():
    # One Binomial(100, 0.1), x = 20: t* = log(x (1-p) / ((n-x) p)) = log(2.25);
    # bound = (1 - p + p e^t)^n e^(-t x) = 1.125^100 / 2.25^20.
    assert chernoff_tail([(100, 0.1)], 20) == pytest.approx(1.125 ** 100 / 2.25 ** 20, rel=1e-9)
    assert chernoff_tail([(100, 0.1)], 5) == 1.0


# -- e-processes ---------------------------------------------------------------------------------


@pytest.mark.parametrize('psi, x, k, theta0', [(2.0, 7, 20, 0.2), (10.0, 3, 3, 0.05), (1.5, 0, 40, 0.3), (4.0, 16, 130, 0.05)])
def test_likelihood_ratio_matches_scipy(psi, x, k, theta0):
    theta = psi * theta0 / (1 - theta0 + psi * theta0)
    expected = stats.binom.logpmf(x, k, theta) - stats.binom.logpmf(x, k, theta0)
    assert log_likelihood_ratio(psi, x, k, theta0) == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_likelihood_ratio_edges():
    assert log_likelihood_ratio(3.0, 0, 0, 0.5) == 0.0
    assert log_likelihood_ratio(3.0, 0, 5, 0.0) == 0.0
    assert log_likelihood_ratio(3.0, 1, 5, 0.0) == math.inf  # an event the null says is impossible
    assert log_likelihood_ratio(3.0, 5, 5, 1.0) == 0.0


def test_mixture_is_the_average_of_the_products_of_scipy_likelihood_ratios():
    odds = odds_grid(2.0, count=4, step=2.0)
    assert odds == [2.0, 4.0, 8.0, 16.0]
    mixture = OddsMixture(odds)
    batches = [(3, 20, 0.05), (0, 15, 0.06), (5, 22, 0.05)]
    for x, k, theta0 in batches:
        mixture.update(x, k, theta0)
    expected = 0.0
    for psi in odds:
        ratio = 1.0
        for x, k, theta0 in batches:
            theta = psi * theta0 / (1 - theta0 + psi * theta0)
            ratio *= stats.binom.pmf(x, k, theta) / stats.binom.pmf(x, k, theta0)
        expected += ratio / len(odds)
    assert mixture.value == pytest.approx(expected, rel=1e-10)
    # the always-valid p-value is 1 / the largest value so far
    assert mixture.p_value == pytest.approx(1 / max(1.0, expected), rel=1e-10)


@pytest.mark.parametrize('draw', ['binomial', 'hypergeometric'])
def test_mixture_stays_a_test_supermartingale_under_the_null(draw):
    """Ville: under the null the chance of ever reaching 1/alpha is at most alpha; at alpha 0.1 it is measurable.
    Counts drawn without replacement (hypergeometric) keep the bound too."""
    rnd = random.Random(11)
    crossed = 0
    runs = 2000
    for _run in range(runs):
        mixture = OddsMixture(odds_grid(1.5))
        for _batch in range(30):
            canary, baseline = rnd.randint(1, 20), rnd.randint(1, 40)
            theta0 = canary / float(canary + baseline)
            k = rnd.randint(0, 12)
            if draw == 'binomial':
                x = sum(1 for _trial in range(k) if rnd.random() < theta0)
            else:
                k = min(k, canary + baseline)
                x = sum(1 for i in rnd.sample(range(canary + baseline), k) if i < canary)
            mixture.update(x, k, theta0)
            if mixture.value >= 10:
                crossed += 1
                break
    assert crossed / runs <= 0.1
    assert crossed > 0  # it does move: the bound is not met by never moving


def test_mixture_refuses_alternatives_on_the_null_side():
    with pytest.raises(ValueError, match='above 1'):
        OddsMixture([1.0, 2.0])
    with pytest.raises(ValueError, match='above 1'):
        odds_grid(0.9)


# -- binned distributions ----------------------------------------------------------------------


def test_log_spaced_edges():
    edges = log_spaced_edges(1.0, 16.0, 2)
    assert edges == [1.0, 1.414, 2.0, 2.828, 4.0, 5.657, 8.0, 11.31, 16.0]
    assert len(log_spaced_edges()) == 69


def test_binned_percentile_interpolates_geometrically_in_a_bin():
    edges = [10.0, 20.0, 40.0]
    counts = [0, 50, 50, 0]  # 50 values in [10, 20), 50 in [20, 40)
    assert binned_percentile(edges, counts, 50) == pytest.approx(20.0)
    # 75 %: halfway through [20, 40) by count -> 20 x 2^0.5
    assert binned_percentile(edges, counts, 75) == pytest.approx(20 * 2 ** 0.5)
    # first bin interpolates linearly from 0; the open last bin gives its lower edge
    assert binned_percentile(edges, [10, 0, 0, 0], 50) == pytest.approx(5.0)
    assert binned_percentile(edges, [0, 0, 0, 4], 95) == 40.0
    assert binned_percentile(edges, [0, 0, 0, 0], 95) is None
    with pytest.raises(ValueError, match='expected 4 bin counts'):
        binned_percentile(edges, [1, 2], 50)


def test_binned_percentile_is_within_a_bin_of_the_exact_one():
    rnd = random.Random(5)
    values = [rnd.lognormvariate(math.log(80), 0.5) for _value in range(5000)]
    edges = log_spaced_edges()
    counts = [0] * (len(edges) + 1)
    for value in values:
        counts[sum(1 for e in edges if value >= e)] += 1
    for pct in (50, 95, 99):
        exact = stats.scoreatpercentile(values, pct)
        assert exact / 1.19 < binned_percentile(edges, counts, pct) < exact * 1.19


@pytest.mark.parametrize('p, text', [(0.0004, 'p<0.001'), (0.0421, 'p=0.042'), (None, 'p=n/a')])
def test_format_p(p, text):
    assert format_p(p) == text


@pytest.mark.parametrize('value, text', [(0.00025, '0.00025'), (13333.3, '1.33e+04'), (3.1e12, '3.1e+12'), (2.0, '2'), (1e-7, '1e-07'),
                                         (math.inf, 'inf'), (None, 'n/a')])
def test_format_number(value, text):
    assert format_number(value) == text
