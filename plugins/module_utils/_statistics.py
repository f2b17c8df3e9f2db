# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Significance tests for the health gate, in pure Python (no scipy).

Every test here is one-sided and asks "is the canary worse?":

* :func:`proportion_greater` - is the canary's rate of bad requests higher
  than the baseline's?  Fisher's exact test for small counts, the pooled
  two-proportion z-test otherwise.
* :func:`binomial_greater` - is a rate higher than a fixed limit?  Exact
  binomial tail.
* :func:`mann_whitney_greater` - do the canary's values tend to be larger
  than the baseline's?  Exact distribution for small samples without ties,
  normal approximation with tie and continuity correction otherwise.

All return a p-value in [0, 1]; the caller compares it with ``1 - confidence``.
"""

from __future__ import annotations

import math

# Below this expected count in any cell of the 2x2 table the z-test is
# unreliable (the usual textbook rule) and Fisher's exact test is used.
EXACT_MIN_EXPECTED = 5
# Largest sample sizes for which Mann-Whitney uses the exact distribution.
EXACT_MWU_MAX_N = 25


def normal_sf(z):
    """Survival function of the standard normal: P(Z > z)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _log_choose(n, k):
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _clamp(p):
    return min(1.0, max(0.0, p))


def _tail_sum(log_terms):
    """Sum exp(log term) over an iterable of log-probabilities, stably."""
    logs = list(log_terms)
    if not logs:
        return 0.0
    top = max(logs)
    return math.exp(top) * sum(math.exp(v - top) for v in logs)


def fisher_greater(x1, n1, x2, n2):
    """One-sided Fisher exact test: P(X >= x1) for the hypergeometric
    distribution of the canary's bad count given the table's margins.

    Same as ``scipy.stats.fisher_exact([[x1, n1-x1], [x2, n2-x2]], alternative='greater')``.
    """
    _check_counts(x1, n1)
    _check_counts(x2, n2)
    bad = x1 + x2
    total = n1 + n2
    if total == 0:
        return 1.0
    hi = min(bad, n1)
    log_denominator = _log_choose(total, n1)
    return _clamp(_tail_sum(
        _log_choose(bad, k) + _log_choose(total - bad, n1 - k) - log_denominator for k in range(x1, hi + 1)))


def two_proportion_z_greater(x1, n1, x2, n2):
    """Pooled two-proportion z-test, one-sided (canary rate greater).

    Returns ``(z, p_value)``.
    """
    _check_counts(x1, n1)
    _check_counts(x2, n2)
    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    variance = pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2)
    diff = x1 / n1 - x2 / n2
    if variance <= 0:
        # Both rates are 0 or both are 1: no evidence of a difference.
        return 0.0, 1.0
    z = diff / math.sqrt(variance)
    return z, normal_sf(z)


def proportion_greater(x1, n1, x2, n2):
    """Is the canary's rate x1/n1 higher than the baseline's x2/n2?

    Returns ``(p_value, method)`` with method ``fisher`` or ``z``.
    """
    _check_counts(x1, n1)
    _check_counts(x2, n2)
    total = n1 + n2
    if total == 0 or n1 == 0 or n2 == 0:
        return 1.0, 'none'
    bad = x1 + x2
    good = total - bad
    smallest_expected = min(n1, n2) * min(bad, good) / float(total)
    if smallest_expected < EXACT_MIN_EXPECTED:
        return fisher_greater(x1, n1, x2, n2), 'fisher'
    return two_proportion_z_greater(x1, n1, x2, n2)[1], 'z'


def binomial_greater(x, n, rate):
    """Exact one-sided binomial test: P(X >= x) for X ~ Binomial(n, rate).

    Small p means the observed x/n is significantly above ``rate``.
    """
    _check_counts(x, n)
    if not 0 <= rate <= 1:
        raise ValueError('rate must be within [0, 1], got %r' % (rate,))
    if x <= 0:
        return 1.0
    if rate <= 0:
        return 0.0
    if rate >= 1:
        return 1.0
    log_p, log_q = math.log(rate), math.log1p(-rate)

    def log_term(k):
        return _log_choose(n, k) + k * log_p + (n - k) * log_q

    # Terms past the mode shrink geometrically; stop once they no longer count.
    logs = []
    top = None
    for k in range(x, n + 1):
        value = log_term(k)
        logs.append(value)
        top = value if top is None else max(top, value)
        if k > n * rate and value < top - 40:
            break
    return _clamp(_tail_sum(logs))


def rank_with_ties(values):
    """Ranks (1-based, ties get their average rank) and the tie group sizes."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j + 2) / 2.0
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def _mwu_exact_sf(u, n1, n2):
    """P(U >= u) under H0 for the exact (tie-free) Mann-Whitney distribution.

    counts[k] = number of arrangements with U == k, built with the classic
    recurrence f(n1, n2, u) = f(n1-1, n2, u-n2) + f(n1, n2-1, u).
    """
    max_u = n1 * n2
    # table[j][k] for the current number of canary values i and j baseline values.
    prev = [[1] + [0] * max_u for _row in range(n2 + 1)]  # i == 0: U is always 0
    for _i in range(1, n1 + 1):
        cur = [[0] * (max_u + 1) for _row in range(n2 + 1)]
        cur[0][0] = 1
        for j in range(1, n2 + 1):
            row, left, up = cur[j], cur[j - 1], prev[j]
            for k in range(max_u + 1):
                value = left[k]
                if k >= j:
                    value += up[k - j]
                row[k] = value
        prev = cur
    counts = prev[n2]
    total = sum(counts)
    start = int(math.ceil(u - 1e-9))
    return sum(counts[max(start, 0):]) / float(total)


def mann_whitney_greater(canary, baseline, exact=None):
    """One-sided Mann-Whitney U test: do canary values tend to be larger?

    Returns ``(u, p_value, method)`` where ``u`` is the canary's U statistic
    (number of pairs where the canary value is larger, ties count 1/2) and
    method is ``exact`` or ``normal``.  ``exact=None`` picks the exact
    distribution for small samples without ties, as scipy does.
    Same as ``scipy.stats.mannwhitneyu(canary, baseline, alternative='greater')``.
    """
    n1, n2 = len(canary), len(baseline)
    if n1 == 0 or n2 == 0:
        return None, 1.0, 'none'
    values = list(canary) + list(baseline)
    ranks, ties = rank_with_ties(values)
    r1 = sum(ranks[:n1])
    u = r1 - n1 * (n1 + 1) / 2.0
    if exact is None:
        exact = not ties and max(n1, n2) <= EXACT_MWU_MAX_N
    if exact:
        return u, _clamp(_mwu_exact_sf(u, n1, n2)), 'exact'
    n = n1 + n2
    tie_term = sum(t ** 3 - t for t in ties) / float(n * (n - 1)) if n > 1 else 0.0
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    if variance <= 0:
        return u, 1.0, 'normal'
    mean = n1 * n2 / 2.0
    z = (u - mean - 0.5) / math.sqrt(variance)
    return u, _clamp(normal_sf(z)), 'normal'


def format_p(p_value):
    """A p-value as people read it: ``p<0.001`` or ``p=0.042``."""
    if p_value is None:
        return 'p=n/a'
    if p_value < 0.001:
        return 'p<0.001'
    return 'p=%.3f' % p_value


def _check_counts(x, n):
    if n < 0 or x < 0 or x > n:
        raise ValueError('counts must satisfy 0 <= x <= n, got x=%r n=%r' % (x, n))
