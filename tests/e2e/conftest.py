"""End-to-end: real ansible-playbook runs of the playbooks against the lab."""

from __future__ import annotations

import pytest

from support.e2e import Scenario, running_lab


@pytest.fixture(scope='module')
def lab3(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp('lab3'), 3, '127.0.20') as lab:
        yield lab


@pytest.fixture
def scenario(lab3, tmp_path):
    return Scenario(lab3, tmp_path)
