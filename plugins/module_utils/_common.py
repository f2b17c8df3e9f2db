# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared error type and module glue for the collection's service layers.

The service layers (``_aws``, ``_winrm``, ``_http_probe``, ``_elasticsearch``
...) know nothing about Ansible: they raise :class:`CanaryError` with a
message shaped "Failed to <action> <object>: <cause>" and structured details.
Only a module's ``main()`` turns that into ``fail_json``.
"""

from __future__ import annotations

import time
import traceback


class CanaryError(Exception):
    """A failure the user can act on. The message never holds a secret."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.message = message
        self.details = details


class Stopwatch:
    """Elapsed seconds on the monotonic clock, rounded for results."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._start = clock()

    def elapsed(self):
        return round(self._clock() - self._start, 3)


def fail_from_error(module, error, **extra):
    """Report a CanaryError (or any exception) through module.fail_json.

    The traceback travels in ``exception`` so that Ansible shows it at -vvv
    only; structured details from the error become result keys.
    """
    result = dict(extra)
    if isinstance(error, CanaryError):
        result.update(error.details)
        msg = error.message
    else:
        msg = 'Unexpected failure: %s: %s' % (type(error).__name__, error)
    module.fail_json(msg=msg, exception=traceback.format_exc(), **result)
