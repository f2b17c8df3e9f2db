# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Statistics for the warm-up probe and the health gate, in pure Python (no scipy).

* :func:`percentile` - a percentile of a list of values (the probe's rounds).
* :func:`binomial_greater` - exact binomial tail P(X >= x).
* :func:`stratified_tail` - exact tail of a sum of hypergeometric counts
  (Fisher's exact test summed over strata); a Chernoff bound past a fixed
  amount of work (a bound is never smaller than the exact tail: a test that
  uses it stays valid).
* :class:`OddsMixture` - an e-process: the likelihood ratio of binomial
  counts, mixed over a grid of odds ratios, against odds ratio 1 (the null).
  Its expectation is at most 1 at every look while the null holds, so by
  Ville's inequality the chance that it EVER reaches ``1 / alpha`` is at most
  ``alpha``, however often it is looked at. A hypergeometric count (sampling
  without replacement) is less spread than the binomial of the same mean in
  the convex order (Hoeffding 1963), so the ratio's expectation stays at most
  1 when the counts are hypergeometric.
* :func:`binned_percentile` - a percentile from counts over fixed bins.

Every test here is one-sided and asks "is the canary worse?".
"""

from __future__ import annotations

import math

# Past this many multiply-adds the exact tail of a sum of counts is
# replaced by its Chernoff bound (a little less powerful, never invalid).
SPLIT_TAIL_MAX_WORK = 60000
# Odds ratios of the mixture: LOW x STEP**k for k < COUNT, equal weights.
MIXTURE_STEP = 1.5
MIXTURE_COUNT = 10
_LOG_HUGE = 700.0


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


# -- exact tails -------------------------------------------------------------------

def _log_choose(n, k):
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _clamp(p):
    return min(1.0, max(0.0, p))


def _check_counts(x, n):
    if n < 0 or x < 0 or x > n:
        raise ValueError('counts must satisfy 0 <= x <= n, got x=%r n=%r' % (x, n))


def _check_rate(rate):
    if not 0 <= rate <= 1:
        raise ValueError('rate must be within [0, 1], got %r' % (rate,))


def binomial_greater(x, n, rate):
    """Exact one-sided binomial test: P(X >= x) for X ~ Binomial(n, rate).

    Same as ``scipy.stats.binom.sf(x - 1, n, rate)``.
    """
    _check_counts(x, n)
    _check_rate(rate)
    if x <= 0:
        return 1.0
    if rate <= 0:
        return 0.0
    if rate >= 1:
        return 1.0
    log_p, log_q = math.log(rate), math.log1p(-rate)
    # Terms past the mode shrink geometrically; stop once they no longer count.
    logs = []
    top = None
    for k in range(x, n + 1):
        value = _log_choose(n, k) + k * log_p + (n - k) * log_q
        logs.append(value)
        top = value if top is None else max(top, value)
        if k > n * rate and value < top - 40:
            break
    return _clamp(math.exp(top) * sum(math.exp(v - top) for v in logs))


def hypergeometric_pmfs(drawn, successes, population, upto):
    """[P(X = j) for j in 0..min(drawn, successes, upto)]: X successes among ``drawn`` of ``population`` holding ``successes``."""
    if not 0 <= drawn <= population or not 0 <= successes <= population:
        raise ValueError('counts must satisfy 0 <= drawn, successes <= population, got %r, %r, %r' % (drawn, successes, population))
    top = min(drawn, successes, upto)
    low = max(0, drawn + successes - population)
    log_total = _log_choose(population, drawn)
    return [math.exp(_log_choose(successes, j) + _log_choose(population - successes, drawn - j) - log_total) if j >= low else 0.0
            for j in range(top + 1)]


def _sum_tail(components, x):
    """P(S >= x) for S the sum of independent counts, each given as (pmf over 0..min(support, x), P(count > x))."""
    dist = [1.0] + [0.0] * x  # dist[s] = P(S = s) for s < x; dist[x] = P(S >= x)
    for pmf, beyond in components:
        # tail[j] = P(count >= j) for j in 0..x, summed from the top so that small tails keep their precision
        tail = [0.0] * (x + 2)
        tail[x + 1] = beyond
        for j in range(x, -1, -1):
            tail[j] = tail[j + 1] + (pmf[j] if j < len(pmf) else 0.0)
        new = [0.0] * (x + 1)
        new[x] = dist[x]
        for s in range(x):
            mass = dist[s]
            if mass == 0.0:
                continue
            need = x - s
            for j in range(min(len(pmf), need)):
                new[s + j] += mass * pmf[j]
            new[x] += mass * tail[need]
        dist = new
    return _clamp(dist[x])


def _hypergeometric_beyond(drawn, successes, population, x):
    """P(X > x) for the hypergeometric count, summed term by term until the terms no longer count."""
    top = min(drawn, successes)
    if top <= x:
        return 0.0
    log_total = _log_choose(population, drawn)
    total, peak = 0.0, 0.0
    for j in range(x + 1, top + 1):
        if drawn - j > population - successes:
            continue
        term = math.exp(_log_choose(successes, j) + _log_choose(population - successes, drawn - j) - log_total)
        total += term
        peak = max(peak, term)
        if term < peak * 1e-17:
            break
    return _clamp(total)


def stratified_tail(strata, x, max_work=SPLIT_TAIL_MAX_WORK):
    """Exact one-sided stratified test: P(S >= x) for S = sum over strata of hypergeometric counts.

    Each stratum is ``(drawn, successes, population)``: the canary's requests,
    the bad (or slow) requests of both groups, and the requests of both
    groups. Under the null (the same rate, or the same latency distribution,
    in both groups) the canary's bad requests are such a draw (Fisher's exact
    test, summed over the strata). Returns ``(p_value, method)``: ``exact``,
    or ``chernoff`` past ``max_work`` steps (the binomial Chernoff bound,
    which bounds a hypergeometric tail too: Hoeffding 1963).
    """
    strata = [(int(n), int(k), int(total)) for n, k, total in strata if n > 0 and k > 0]
    if x <= 0:
        return 1.0, 'exact'
    if x > sum(min(n, k) for n, k, _total in strata):
        return 0.0, 'exact'
    if x * sum(min(k, n, x) for n, k, _total in strata) > max_work:
        return chernoff_tail([(k, n / float(total)) for n, k, total in strata], x), 'chernoff'
    components = []
    for n, k, total in strata:
        pmf = hypergeometric_pmfs(n, k, total, x)
        components.append((pmf, _hypergeometric_beyond(n, k, total, x)))
    return _sum_tail(components, x), 'exact'


def chernoff_tail(batches, x):
    """The Chernoff bound on P(S >= x) for S a sum of independent binomials (an upper bound)."""
    mean = sum(k * theta for k, theta in batches)
    if x <= mean:
        return 1.0
    if any(theta >= 1 for _k, theta in batches):
        certain = sum(k for k, theta in batches if theta >= 1)
        batches = [(k, theta) for k, theta in batches if theta < 1]
        x -= certain
        if x <= 0:
            return 1.0

    def slope(t):
        return sum(k * theta * math.exp(t) / (1 - theta + theta * math.exp(t)) for k, theta in batches) - x

    low, high = 0.0, 1.0
    while slope(high) < 0 and high < 700:
        high *= 2
    for _step in range(100):
        mid = (low + high) / 2
        if slope(mid) < 0:
            low = mid
        else:
            high = mid
    t = (low + high) / 2
    log_bound = sum(k * math.log1p(theta * math.expm1(t)) for k, theta in batches) - t * x
    return _clamp(math.exp(min(log_bound, 0.0)))


# -- e-processes -------------------------------------------------------------------------

def odds_grid(low, count=MIXTURE_COUNT, step=MIXTURE_STEP):
    """The odds ratios of a mixture: low, low x step, ... (count of them)."""
    if low <= 1:
        raise ValueError('the alternatives of a one-sided mixture need odds ratios above 1, got %r' % (low,))
    return [low * step ** k for k in range(count)]


def log_likelihood_ratio(psi, x, k, theta0):
    """log of P(x | Binomial(k, theta)) / P(x | Binomial(k, theta0)) where odds(theta) = psi x odds(theta0).

    = x log(psi) - k log(1 - theta0 + psi theta0).
    """
    if k == 0:
        return 0.0
    if theta0 <= 0:
        return 0.0 if x == 0 else math.inf
    if theta0 >= 1:
        return 0.0
    return x * math.log(psi) - k * math.log1p(theta0 * (psi - 1))


def _log_sum_exp(values):
    top = max(values)
    if top in (math.inf, -math.inf):
        return top
    return top + math.log(sum(math.exp(v - top) for v in values))


class OddsMixture:
    """e-process for binomial counts that come in batches.

    Each batch gives ``x`` successes of ``k`` trials with null probability
    ``theta0`` (which may change from batch to batch). The null says the true
    probability is at most ``theta0`` in every batch. The value is the mixture,
    with equal weights over ``odds``, of the products of the batches'
    likelihood ratios ``LR(psi)`` (odds ratio ``psi`` against 1): a nonnegative
    supermartingale with initial value 1 under the null.
    """

    def __init__(self, odds):
        self.odds = list(odds)
        if not self.odds or min(self.odds) <= 1:
            raise ValueError('a one-sided mixture needs odds ratios above 1')
        self.log_weight = -math.log(len(self.odds))
        self.log_lr = [0.0] * len(self.odds)
        self.log_peak = 0.0

    def update(self, x, k, theta0):
        _check_counts(x, k)
        _check_rate(theta0)
        if k == 0:
            return
        for i, psi in enumerate(self.odds):
            self.log_lr[i] += log_likelihood_ratio(psi, x, k, theta0)
        self.log_peak = max(self.log_peak, self.log_value)

    @property
    def log_value(self):
        return self.log_weight + _log_sum_exp(self.log_lr)

    @property
    def value(self):
        return math.exp(min(self.log_value, _LOG_HUGE))

    @property
    def p_value(self):
        """The always-valid p-value: 1 / the largest value so far."""
        return math.exp(-min(self.log_peak, _LOG_HUGE))


# -- binned distributions -----------------------------------------------------------------

def log_spaced_edges(low=1.0, high=131072.0, per_doubling=4):
    """Bin edges low, low x 2^(1/per_doubling), ... up to high, each rounded to 4 significant digits."""
    edges = []
    k = 0
    while True:
        value = low * 2.0 ** (k / float(per_doubling))
        if value > high * (1 + 1e-9):
            break
        edges.append(float('%.4g' % value))
        k += 1
    return edges


def binned_percentile(edges, counts, pct):
    """The ``pct`` percentile of values counted in bins.

    ``counts[0]`` counts values below ``edges[0]``, ``counts[i]`` values in
    ``[edges[i-1], edges[i])``, ``counts[-1]`` values at or above
    ``edges[-1]``. Interpolates geometrically inside a bin (linearly in the
    first, from 0); a percentile in the open last bin is its lower edge.
    Returns None without values.
    """
    if len(counts) != len(edges) + 1:
        raise ValueError('expected %d bin counts for %d edges, got %d' % (len(edges) + 1, len(edges), len(counts)))
    if not 0 <= pct <= 100:
        raise ValueError('percentile must be between 0 and 100, got %r' % (pct,))
    total = sum(counts)
    if total <= 0:
        return None
    rank = total * pct / 100.0
    seen = 0
    for i, count in enumerate(counts):
        if count <= 0:
            continue
        if seen + count >= rank or i == len(counts) - 1:
            fraction = min(1.0, max(0.0, (rank - seen) / float(count)))
            if i == len(counts) - 1:
                return float(edges[-1])
            high = edges[i]
            low = edges[i - 1] if i > 0 else 0.0
            if low <= 0:
                return low + (high - low) * fraction
            return low * (high / low) ** fraction
        seen += count
    return float(edges[-1])


def format_p(p_value):
    """A p-value as people read it: ``p<0.001`` or ``p=0.042``."""
    if p_value is None:
        return 'p=n/a'
    if p_value < 0.001:
        return 'p<0.001'
    return 'p=%.3f' % p_value


def format_number(value):
    """A positive figure in 3 significant digits, in plain or e-notation: 0.00025, 4000, 3.1e+12."""
    if value is None:
        return 'n/a'
    if math.isinf(value):
        return 'inf'
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-4):
        return '%.2g' % value
    return '%.3g' % value
