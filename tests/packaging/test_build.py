"""`ansible-galaxy collection build` ships the collection and none of the
checkout's caches, virtual environments, lab state or test output."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile

from collection_build import ROOT, build_tarball

# Every kind of clutter a working checkout has, relative to its root.
CLUTTER = [
    '.build/ansible_collections/immune/canary/README.md',
    '.venv/bin/python',
    '.venv-2.18/bin/python',
    '.lab/demo/pki/site.key',
    '.pytest_cache/v/cache/nodeids',
    '.ruff_cache/0.6.0/123',
    'tests/.pytest_cache/README.md',
    'tests/output/junit/python3.11-modules.xml',
    'bench/results/run.json',
    'plugins/modules/__pycache__/alb_target.cpython-311.pyc',
    'tests/unit/__pycache__/test_x.cpython-311-pytest-8.pyc',
    '__pycache__/x.cpython-311.pyc',
    'plugins/module_utils/_aws.pyc',
    'dist/immune-canary-0.0.9.tar.gz',
    'immune-canary-0.0.8.tar.gz',
]
FORBIDDEN = ('.build/', '.venv/', '.venv-', '.lab/', '.pytest_cache/', '.ruff_cache/', 'tests/output/', 'bench/results/', 'dist/', '.ci/')
# What only development needs: the tests and their data, the bench, tools and the checkout's configuration.
DEVELOPMENT = ('.ci/', 'tests/', 'bench/', 'tools/', 'Makefile', 'ansible.cfg', 'pytest.ini', 'ruff.toml', '.ansible-lint', '.gitignore',
               'requirements-test.txt', 'requirements-bench.txt', 'requirements-compat-')


def _tracked_files():
    out = subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if (ROOT / line).is_file()]


def _members(tarball):
    with tarfile.open(tarball) as tar:
        return {m.name for m in tar.getmembers() if m.isfile()}


def test_a_checkout_full_of_clutter_builds_a_clean_tarball(tmp_path):
    source = tmp_path / 'checkout'
    tracked = _tracked_files()
    for rel in tracked:
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, source / rel)
    for rel in CLUTTER:
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_text('clutter\n')

    members = _members(build_tarball(source, tmp_path / 'dist'))

    assert sorted(set(CLUTTER) & members) == []
    assert sorted(m for m in members if m.startswith(FORBIDDEN)) == []
    assert sorted(m for m in members if '__pycache__' in m or m.endswith(('.pyc', '.tar.gz'))) == []
    # Everything tracked is shipped except the development tree and the files galaxy.yml becomes.
    expected = {rel for rel in tracked if not rel.startswith(DEVELOPMENT) and rel != 'galaxy.yml'}
    assert sorted(expected - members) == []
    assert sorted(members - expected - {'MANIFEST.json', 'FILES.json'}) == []


def test_the_tarball_has_the_collection_metadata(collection_tarball):
    with tarfile.open(collection_tarball) as tar:
        manifest = json.load(tar.extractfile('MANIFEST.json'))
        members = set(tar.getnames())
    info = manifest['collection_info']
    assert (info['namespace'], info['name']) == ('immune', 'canary')
    for rel in ('meta/runtime.yml', 'meta/execution-environment.yml', 'requirements.txt', 'meta/ee-requirements.txt', 'meta/ee-bindep.txt',
                'playbooks/deploy.yml', 'roles/rollout/meta/argument_specs.yml', 'plugins/modules/alb_target.py',
                'plugins/filter/junit_report.py', 'plugins/action/alb_target.py', 'plugins/plugin_utils/_in_process.py',
                'inventory/app.target_group.yml', 'extras/jenkins/Jenkinsfile', 'execution-environment.yml', 'README.md', 'COPYING'):
        assert rel in members, rel
    assert sorted(m for m in members if m.startswith(FORBIDDEN + DEVELOPMENT)) == []
    # No test data: the whole tarball is smaller than the cmdlet list the tests check the PowerShell with.
    assert collection_tarball.stat().st_size < (ROOT / 'tests' / 'data' / 'ps_cmdlets.json').stat().st_size / 2
