"""The role's bake phase gives each host's gate its share of the rollout's budget, by the host's place in the rollout.

The phase runs through real ansible-playbook (the role's own ``phases/bake.yml``) against the Elasticsearch
double, on hosts whose preflight state says which site each ran.
"""

from __future__ import annotations

import datetime
import json
import random

import pytest

from doubles.es_double import EsDouble, iis_log_docs
from support.ansible_runner import run_playbook

HOSTS = ['web1', 'web2', 'web3', 'web4', 'web5']
OLD, NEW = 'app.example.com-3456', 'app.example.com-3457'
BAKE = 'Bake in production and let Elasticsearch decide'


@pytest.fixture(scope='module')
def es():
    with EsDouble('es8') as running:
        now = datetime.datetime.now(datetime.timezone.utc)
        rnd = random.Random(7)
        docs = []
        for host in HOSTS:
            docs += iis_log_docs(200, host, NEW, now - datetime.timedelta(seconds=60), now, 0.01, 50.0, rnd)
            docs += iis_log_docs(200, host, OLD, now - datetime.timedelta(seconds=60), now, 0.01, 50.0, rnd)
        running.index_docs('iis-logs-2026.05', docs)
        yield running


def bake(es, tmp_path, running, serial=1, **extra):
    """The bake phase on every host that does not run the new version yet; returns {host: its gate's budget}."""
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=60)).isoformat()
    play = [
        {'name': 'What preflight records', 'hosts': 'all', 'gather_facts': False, 'tasks': [
            {'name': 'Record the running site', 'ansible.builtin.set_fact': {
                '__rollout_host_state': {'running': '{{ __sites[inventory_hostname] }}', 'fallback': OLD}}}]},
        {'name': 'Rollout', 'hosts': 'all', 'gather_facts': False, 'serial': serial,
         'module_defaults': {'group/immune.canary.elasticsearch': {'es_hosts': [es.url]}},
         'tasks': [
             {'name': 'Bake', 'ansible.builtin.include_role': {'name': 'immune.canary.rollout', 'tasks_from': 'phases/bake.yml'},
              'when': '__sites[inventory_hostname] != "%s"' % NEW,
              'vars': {'__rollout_admitted_at': since}}]},
    ]
    variables = dict({'__sites': dict(zip(HOSTS, running, strict=True)), 'rollout_app': 'app.example.com', 'rollout_version': '3457',
                      'rollout_es_hosts': [es.url], 'rollout_bake_seconds': 0, 'rollout_gate_no_data': 'pass'}, **extra)
    (tmp_path / 'play.yml').write_text(json.dumps(play), encoding='utf-8')
    (tmp_path / 'vars.json').write_text(json.dumps(variables), encoding='utf-8')
    run = run_playbook(tmp_path / 'play.yml', inventory=','.join(HOSTS) + ',',
                       args=['-c', 'local', '-e', '@%s' % (tmp_path / 'vars.json')])
    assert run.rc == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert 'DEPRECATION' not in run.stdout + run.stderr, run.stderr[-3000:]
    records = [r for r in run.records if r['task'].endswith(BAKE) and r['status'] != 'skipped']
    assert all(r['status'] == 'ok' and r['result']['verdict'] == 'pass' for r in records), records
    return {r['host']: r['result']['false_fail_rate'] for r in records}


def share(rate, position):
    return rate / (position * (position + 1))


@pytest.mark.parametrize('serial', [1, 2])
def test_each_host_gets_its_place_in_the_rollout_order(es, tmp_path, serial):
    budgets = bake(es, tmp_path, [OLD] * 5, serial=serial)
    assert budgets == {host: pytest.approx(share(0.01, k), rel=1e-9) for k, host in enumerate(HOSTS, 1)}
    assert sum(budgets.values()) == pytest.approx(0.01 * 5 / 6)


def test_hosts_already_on_the_new_version_keep_the_places_an_earlier_run_spent(es, tmp_path):
    # web4 took the release in an earlier run of this rollout (rollout_stop_after_first): it had place 1
    budgets = bake(es, tmp_path, [OLD, OLD, OLD, NEW, OLD], rollout_false_abort_rate=0.02)
    assert budgets == {'web1': pytest.approx(share(0.02, 2)), 'web2': pytest.approx(share(0.02, 3)),
                       'web3': pytest.approx(share(0.02, 4)), 'web5': pytest.approx(share(0.02, 5))}


def test_the_per_host_confidence_of_old_still_gives_every_host_the_same_budget(es, tmp_path):
    budgets = bake(es, tmp_path, [OLD] * 5, rollout_gate_confidence=0.98)
    assert budgets == {host: pytest.approx(0.02) for host in HOSTS}
