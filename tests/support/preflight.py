"""The deploy playbook's preflight against stand-ins, for the role's integration tests.

The hosts do not exist: a run that gets past the fleet-wide checks fails at
the first read of a host, which the tests take as proof that it got there.
"""

from __future__ import annotations

import json

from support.ansible_runner import ROOT, run_playbook

GOOD = {
    'rollout_app': 'app.example.com',
    'rollout_version': '3457',
    'rollout_package_url': 'https://artifacts.example.com/app-3457.zip',
    'rollout_package_checksum': 'sha256:' + 'a' * 64,
    'rollout_target_groups': ['app-https'],
    'rollout_public_url': 'https://app.example.com/health',
}
HOST_READ = 'Read which application site runs on the host'


def deploy(es, tmp_path, alb=None, hosts=None, **extra):
    """deploy.yml on web1 and web2 (or ``hosts``: {name: instance id}) with the good inputs and ``extra``."""
    variables = dict(GOOD, rollout_es_hosts=[es.url], **extra)
    if alb is not None:
        variables['rollout_aws'] = alb if isinstance(alb, dict) else alb.aws_options
    path = tmp_path / 'vars.json'
    path.write_text(json.dumps(variables), encoding='utf-8')
    inventory = 'web1,web2,'
    if hosts is not None:
        inventory = tmp_path / 'hosts.json'
        inventory.write_text(json.dumps({'all': {'hosts': {h: {'instance_id': i} for h, i in hosts.items()}}}), encoding='utf-8')
    es.reset_counters()
    return run_playbook(ROOT / 'playbooks' / 'deploy.yml', inventory=inventory, args=['-e', '@%s' % path, '-f', '5'])


def output(run):
    """Everything the run said: stdout, stderr and every task result's message."""
    return '\n'.join([run.stdout, run.stderr] + [r['result'].get('msg', '') for r in run.records
                                                 if isinstance(r.get('result', {}).get('msg'), str)])


def reached_hosts(run):
    """The hosts whose running site the run went on to read."""
    return sorted({r['host'] for r in run.records if r['task'].endswith(HOST_READ)})


def fact(run, task, name):
    """The fact ``name`` that the first result of ``task`` set."""
    found = [r for r in run.records if r['task'].endswith(task)]
    return found[0]['result']['ansible_facts'][name]
