# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting done one way: a predicate, one deadline on the monotonic clock,
a poll interval that backs off, and a timeout that carries what was seen last.
"""

from __future__ import annotations

import time

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError


class WaitTimeout(CanaryError):
    """The deadline passed before the predicate was satisfied."""

    def __init__(self, message, last=None, elapsed=None, **details):
        super().__init__(message, **details)
        self.last = last
        self.elapsed = elapsed


class Deadline:
    """One deadline for a whole operation."""

    def __init__(self, timeout, clock=time.monotonic):
        self._clock = clock
        self.start = clock()
        self.timeout = float(timeout)

    def elapsed(self):
        return self._clock() - self.start

    def remaining(self):
        return self.timeout - self.elapsed()

    def expired(self):
        return self.remaining() <= 0


def poll_intervals(initial, maximum, factor):
    """Yield poll intervals: initial, then multiplied by factor up to maximum."""
    interval = float(initial)
    while True:
        yield interval
        interval = min(float(maximum), interval * factor)


def wait_for(check, timeout, what, initial_interval=1.0, max_interval=10.0, factor=1.5,
             sleep=time.sleep, clock=time.monotonic, describe=repr):
    """Call ``check()`` until it returns ``(True, observed)``.

    ``check`` returns ``(done, observed)``; it may raise CanaryError to stop
    waiting at once (a state that can never become good). Returns
    ``(observed, elapsed_seconds)``. On timeout raises WaitTimeout whose
    message names ``what``, the elapsed time and ``describe(last observed)``.
    """
    deadline = Deadline(timeout, clock=clock)
    intervals = poll_intervals(initial_interval, max_interval, factor)
    while True:
        done, observed = check()
        if done:
            return observed, deadline.elapsed()
        remaining = deadline.remaining()
        if remaining <= 0:
            elapsed = deadline.elapsed()
            raise WaitTimeout(
                'Timed out after %.1f s waiting for %s; last observed: %s' % (elapsed, what, describe(observed)),
                last=observed, elapsed=elapsed)
        sleep(min(next(intervals), remaining))
