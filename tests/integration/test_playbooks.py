"""The playbooks as users call them: by path and by collection name."""

from __future__ import annotations

import subprocess

import pytest

from support.ansible_runner import BIN, ROOT, ansible_env


@pytest.mark.parametrize('playbook', ['deploy', 'rollback', 'status'])
@pytest.mark.parametrize('form', ['path', 'fqcn'])
def test_playbook_syntax(playbook, form):
    target = str(ROOT / 'playbooks' / ('%s.yml' % playbook)) if form == 'path' else 'immune.canary.%s' % playbook
    proc = subprocess.run([str(BIN / 'ansible-playbook'), '--syntax-check', '-i', 'localhost,', target], capture_output=True, text=True,
                          env=ansible_env(), timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_role_documentation_renders():
    proc = subprocess.run([str(BIN / 'ansible-doc'), '-t', 'role', 'immune.canary.rollout'], capture_output=True, text=True,
                          env=ansible_env(), timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    for entry in ('main', 'preflight', 'revert', 'reconcile', 'rollback', 'report', 'status'):
        assert 'ENTRY POINT: *%s*' % entry in proc.stdout
    assert 'rollout_min_healthy' in proc.stdout


def test_missing_required_variables_are_named_before_anything_runs():
    proc = subprocess.run([str(BIN / 'ansible-playbook'), '-i', 'web1,', str(ROOT / 'playbooks' / 'deploy.yml'), '-e', 'rollout_app=x'],
                          capture_output=True, text=True, env=ansible_env(), timeout=120, check=False)
    assert proc.returncode != 0
    for name in ('rollout_version', 'rollout_package_url', 'rollout_package_checksum', 'rollout_target_groups', 'rollout_es_hosts'):
        assert name in proc.stdout + proc.stderr
