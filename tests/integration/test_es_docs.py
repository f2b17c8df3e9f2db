"""ansible-doc renders both Elasticsearch modules, shared fragment included."""

from __future__ import annotations

import subprocess

import pytest

from support.ansible_runner import BIN, ansible_env


@pytest.mark.parametrize('module, own_option', [('es_health_gate', 'bake_time'), ('deploy_event', 'event_id')])
def test_ansible_doc_renders(module, own_option):
    proc = subprocess.run([str(BIN / 'ansible-doc'), 'immune.canary.' + module], capture_output=True, text=True, timeout=120,
                          env=ansible_env({'ANSIBLE_NOCOLOR': '1'}), check=False)
    assert proc.returncode == 0, proc.stderr
    assert 'immune.canary.' + module in proc.stdout
    for option in (own_option, 'es_hosts', 'es_api_key', 'es_aws_sigv4'):
        assert option in proc.stdout
    assert 'ERROR' not in proc.stderr
