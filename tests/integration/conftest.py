"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from doubles.winrm_double import WinRMDouble


@pytest.fixture(scope='module')
def winrm():
    """A WinRM double with one host, web1, listening."""
    with WinRMDouble() as double:
        double.add_host('web1')
        double.running = double.listen('web1')
        yield double
