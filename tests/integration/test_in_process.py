"""The modules run inside the Ansible worker, with the same results as a module process.

Each module's action plugin calls the module's own main() in the worker
process (plugin_utils/_in_process.py); ``immune_canary_in_process=false``
runs it as a plain module, and so does an ansible-core the runner was not
tested with, with one warning. Every way goes through real ansible-playbook
against the WS-Management double here. ``make test`` runs this file on each
supported ansible-core (2.18 in ``compat``, 2.19 and 2.20 in
``compat-in-process``, the newest in ``integration``).
"""

from __future__ import annotations

import json

import pytest
from ansible.release import __version__ as ANSIBLE_VERSION

from doubles.winrm_double import WinRMDouble
from support.ansible_runner import run_module, run_playbook

APP = 'app.example.com'
PASSWORD = 'In-Process-Pa55word-7f3e'
FALLBACK_WARNING = 'immune.canary runs its modules as plain module processes (slower) because the in-process runner cannot be used'


@pytest.fixture
def double():
    with WinRMDouble(password=PASSWORD) as d:
        host = d.add_host('web1')
        host.add_site(APP + '-1', [dict(port=443, host_header=APP)], physical_path='D:\\sites\\' + APP + '-1')
        d.running = d.listen('web1')
        yield d


def winrm_args(double, **extra):
    args = dict(winrm_host=double.running.host, winrm_port=double.running.port, winrm_scheme='http', winrm_transport='basic',
                winrm_user=double.user, winrm_password=PASSWORD, app=APP, state='query')
    args.update(extra)
    return args


def query(double, in_process, **extra):
    # ansible-core 2.21 adds the masked arguments to a result only when asked (earlier releases always do).
    return run_module('iis_site_swap', winrm_args(double, **extra), verbosity=4, env={'ANSIBLE_INJECT_INVOCATION': 'true'},
                      extra_args=['-e', 'immune_canary_in_process=%s' % in_process])


def comparable(result):
    return {k: v for k, v in result.items() if k not in ('elapsed',)}


def ran_in_process(run):
    """Only a module process is packed into an AnsiballZ payload and started as a new Python."""
    return 'AnsiballZ_iis_site_swap.py' not in run.stdout + run.stderr


def test_this_ansible_core_runs_the_modules_in_process_with_the_same_results_and_masking(double):
    inside, outside = query(double, 'true'), query(double, 'false')
    assert not inside.failed and not outside.failed, (inside.result, outside.result)
    assert (ran_in_process(inside), ran_in_process(outside)) == (True, False), ANSIBLE_VERSION
    assert FALLBACK_WARNING not in inside.stdout + inside.stderr
    # The whole result, the invocation with its masked password included.
    assert comparable(inside.result) == comparable(outside.result)
    assert inside.result['sites'][0]['name'] == APP + '-1'
    assert inside.result['invocation']['module_args']['winrm_password'] == 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
    for run in (inside, outside):
        assert PASSWORD not in run.stdout + run.stderr


def test_check_mode_and_diff_read_the_same_both_ways(double):
    host = double.hosts['web1']
    host.add_site(APP + '-2', [dict(port=443, host_header=APP)], physical_path='D:\\sites\\' + APP + '-2', state='Stopped')
    change = dict(state='started', active=APP + '-2')
    runs = [run_module('iis_site_swap', winrm_args(double, **change), check=True, diff=True,
                       extra_args=['-e', 'immune_canary_in_process=%s' % way]) for way in ('true', 'false')]
    inside, outside = runs
    assert not inside.failed, inside.result
    assert (inside.result['changed'], inside.result['active'], inside.result['previous_active']) == (True, APP + '-2', APP + '-1')
    assert comparable(inside.result) == comparable(outside.result)
    # The diff Ansible prints is the same both ways.
    assert inside.stdout.split('TASK [Run module]')[1].split('PLAY RECAP')[0] == outside.stdout.split('TASK [Run module]')[1].split('PLAY RECAP')[0]
    assert host.running() == [APP + '-1']  # check mode changed nothing either way


def test_failures_and_bad_input_read_the_same_both_ways(double):
    for extra, message in ((dict(winrm_port=0), 'Invalid winrm_port 0'),
                           (dict(app=''), "Invalid app ''"),
                           (dict(state='sideways'), 'value of state must be one of: started, stopped, query, got: sideways')):
        inside, outside = query(double, 'true', **extra), query(double, 'false', **extra)
        assert inside.failed and outside.failed
        assert message in inside.result['msg']
        assert inside.result['msg'] == outside.result['msg']
    assert double.requests == 0


def test_an_untested_ansible_core_runs_the_plain_module_with_one_warning(double, tmp_path):
    # An ansible-core the runner was not tested with: the release number is all that differs.
    (tmp_path / 'sitecustomize.py').write_text('import ansible.release\nansible.release.__version__ = "2.99.0"\n')
    inventory = tmp_path / 'hosts.json'
    inventory.write_text(json.dumps({'all': {'hosts': {'one': {}, 'two': {}},
                                             'vars': {'ansible_connection': 'local'}}}))
    args = winrm_args(double)
    playbook = tmp_path / 'play.yml'
    playbook.write_text(json.dumps([{
        'name': 'Two module tasks on two hosts', 'hosts': 'all', 'gather_facts': False,
        'tasks': [{'name': 'First query', 'immune.canary.iis_site_swap': args},
                  {'name': 'Second query', 'immune.canary.iis_site_swap': args}],
    }]))
    run = run_playbook(playbook, args=['-vvv'], inventory=inventory, env={'PYTHONPATH': str(tmp_path)})
    assert run.rc == 0, run.stdout + run.stderr
    output = ' '.join((run.stdout + run.stderr).split())  # ansible-core 2.18 wraps warnings at 80 columns
    assert 'AnsiballZ_iis_site_swap.py' in output
    assert output.count(FALLBACK_WARNING) == 1, output
    assert 'ansible-core 2.99.0 is not one of the releases it was tested with (2.18, 2.19, 2.20, 2.21)' in output
    results = run.results()
    assert len(results) == 4 and all(r['sites'][0]['name'] == APP + '-1' for r in results)
    assert PASSWORD not in output
