"""The role refuses bad and hostile input in preflight, every problem named at once, before any system is contacted."""

from __future__ import annotations

import json

import pytest

from support.ansible_runner import ROOT, run_playbook
from support.preflight import GOOD


def deploy(es, tmp_path, **bad):
    variables = dict(GOOD, rollout_es_hosts=[es.url])
    variables.update(bad)
    path = tmp_path / 'vars.json'
    path.write_text(json.dumps(variables), encoding='utf-8')
    es.reset_counters()
    return run_playbook(ROOT / 'playbooks' / 'deploy.yml', inventory='web1,', args=['-e', '@%s' % path])


@pytest.mark.parametrize('bad', [
    {'rollout_version': '1;rm -rf', 'rollout_app': 'app\nexample', 'rollout_package_checksum': 'sha256:xyz',
     'rollout_package_url': 'ftp://x/app.zip', 'rollout_public_url': 'https:///health'},
    {'rollout_version': '$(Stop-Computer)', 'rollout_app': 'a"b', 'rollout_package_url': 'https:///app.zip', 'rollout_target_groups': [],
     'rollout_public_url': 'app.example.com/health'},
    {'rollout_version': '1 OR 2', 'rollout_app': 'app:*', 'rollout_es_hosts': []},
    {'rollout_false_abort_rate': 0, 'rollout_gate_confidence': 1.5},
    {'rollout_false_abort_rate': 0.9, 'rollout_gate_confidence': 0.2},
], ids=['semicolon-newline', 'subexpr-quote', 'lucene', 'budget-zero', 'budget-too-large'])
def test_every_bad_value_is_named_and_nothing_is_contacted(es, tmp_path, bad):
    run = deploy(es, tmp_path, **bad)
    assert run.rc != 0
    # The messages as the task results hold them (stdout escapes quotes differently across ansible-core releases).
    output = '\n'.join([run.stdout, run.stderr] + messages(run.records))
    for option in bad:
        shown = 'rollout_public_url / rollout_warmup_urls' if option == 'rollout_public_url' else option
        assert 'Invalid %s: ' % shown in output, (option, output[-3000:])
    if 'rollout_version' in bad:
        assert 'Invalid rollout_version: %s must be 1 to 64 letters, digits' % json.dumps(bad['rollout_version']) in output
    if 'rollout_false_abort_rate' in bad:
        assert 'must be the chance that a rollout stops a release as good as the running one: above 0 and at most 0.5 per host' in output
        assert 'must be empty (use rollout_false_abort_rate) or in [0.5, 1), e.g. 0.98' in output
    assert es.requests == 0


@pytest.mark.parametrize('fine', [{}, {'rollout_gate_confidence': 0.98}, {'rollout_false_abort_rate': 0.5}],
                         ids=['defaults', 'confidence', 'budget-half'])
def test_an_ordinary_version_passes_the_check(es, tmp_path, fine):
    run = deploy(es, tmp_path, rollout_version='v2026.05.01-rc1+build_7', **fine)
    assert 'Invalid rollout_' not in run.stdout
    # Past the input check: the next step takes the deploy lock in Elasticsearch.
    assert 'Invalid rollout_version' not in run.stdout
    assert any(path.startswith('PUT /canary-locks/_create/app.example.com') for path in es.paths), run.stdout[-3000:]


def messages(value):
    """Every ``msg`` string in task results, however deep (loop items)."""
    if isinstance(value, dict):
        found = [value['msg']] if isinstance(value.get('msg'), str) else []
        return found + [m for v in value.values() for m in messages(v)]
    if isinstance(value, list):
        return [m for v in value for m in messages(v)]
    return []
