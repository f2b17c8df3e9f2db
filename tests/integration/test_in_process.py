"""The modules run inside the Ansible worker, with the same results as a module process.

Each module's action plugin calls the module's own main() in the worker
process (plugin_utils/_in_process.py); ``immune_canary_in_process=false``
runs it as a plain module. Both ways go through real ansible-playbook
against the WS-Management double here.
"""

from __future__ import annotations

import pytest

from doubles.winrm_double import WinRMDouble
from support.ansible_runner import run_module

APP = 'app.example.com'
PASSWORD = 'In-Process-Pa55word-7f3e'


@pytest.fixture
def double():
    with WinRMDouble(password=PASSWORD) as d:
        host = d.add_host('web1')
        host.add_site(APP + '-1', [dict(port=443, host_header=APP)], physical_path='D:\\sites\\' + APP + '-1')
        d.running = d.listen('web1')
        yield d


def query(double, in_process, **extra):
    args = dict(winrm_host=double.running.host, winrm_port=double.running.port, winrm_scheme='http', winrm_transport='basic',
                winrm_user=double.user, winrm_password=PASSWORD, app=APP, state='query')
    args.update(extra)
    return run_module('iis_site_swap', args, verbosity=4, extra_args=['-e', 'immune_canary_in_process=%s' % in_process])


def comparable(result):
    return {k: v for k, v in result.items() if k not in ('elapsed', 'invocation')}


def test_in_process_and_module_process_give_the_same_result_and_keep_the_secret(double):
    inside = query(double, 'true')
    outside = query(double, 'false')
    assert not inside.failed and not outside.failed, (inside.result, outside.result)
    assert comparable(inside.result) == comparable(outside.result)
    assert inside.result['sites'][0]['name'] == APP + '-1'
    # Only the module process is packed into an AnsiballZ payload and started as a new Python.
    assert 'AnsiballZ_iis_site_swap.py' not in inside.stdout + inside.stderr
    assert 'AnsiballZ_iis_site_swap.py' in outside.stdout + outside.stderr
    for run in (inside, outside):
        assert PASSWORD not in run.stdout + run.stderr


def test_failures_and_bad_input_read_the_same_both_ways(double):
    for extra, message in ((dict(winrm_port=0), 'Invalid winrm_port 0'),
                           (dict(app=''), "Invalid app ''"),
                           (dict(state='sideways'), 'value of state must be one of: started, stopped, query, got: sideways')):
        inside, outside = query(double, 'true', **extra), query(double, 'false', **extra)
        assert inside.failed and outside.failed
        assert message in inside.result['msg']
        assert inside.result['msg'] == outside.result['msg']
    assert double.requests == 0
