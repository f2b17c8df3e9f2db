"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from doubles.es_double import EsDouble
from doubles.winrm_double import WinRMDouble


@pytest.fixture(scope='module')
def es():
    """An empty Elasticsearch double (es8) for a module; a module with data defines its own."""
    with EsDouble('es8') as running:
        yield running


@pytest.fixture(scope='module')
def winrm():
    """A WinRM double with one host, web1, listening."""
    with WinRMDouble() as double:
        double.add_host('web1')
        double.running = double.listen('web1')
        yield double
