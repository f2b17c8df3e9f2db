"""plugin_utils._in_process: a module's main() run inside the Ansible worker."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from ansible.module_utils import basic

from ansible_collections.immune.canary.plugins.plugin_utils import _in_process


def echo_main():
    module = basic.AnsibleModule(argument_spec=dict(name=dict(type='str', required=True), token=dict(type='str', no_log=True)),
                                 supports_check_mode=True)
    module.warn('checked %s' % module.params['name'])
    module.exit_json(changed=not module.check_mode, name=module.params['name'], token_seen=module.params['token'])


def failing_main():
    module = basic.AnsibleModule(argument_spec=dict(name=dict(type='str', required=True)))
    module.fail_json(msg='Failed to do %s' % module.params['name'])


def crashing_main():
    raise RuntimeError('boom in the module')


def module_args(**args):
    return dict(args, _ansible_check_mode=False, _ansible_no_log=False, _ansible_diff=False, _ansible_verbosity=0,
                _ansible_module_name='immune.canary.echo')


def last_json(stdout):
    return json.loads(stdout.strip().splitlines()[-1])


def test_exit_json_becomes_rc_0_and_the_modules_json_with_secrets_masked():
    res = _in_process.run_main(echo_main, module_args(name='web1', token='S3cret-token-value'))
    assert res['rc'] == 0
    out = last_json(res['stdout'])
    assert (out['changed'], out['name']) == (True, 'web1')
    # ansible-core 2.19 shows a warning raised on the controller at once, 2.18 returns it in the result.
    assert 'checked web1' in json.dumps(out.get('warnings', [])) + res['stderr']
    # AnsibleModule masks no_log values in its result, in process as in a module process.
    assert out['token_seen'] in ('********', 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER')
    assert 'S3cret-token-value' not in res['stdout'] + res['stderr']


def test_check_mode_and_validation_are_the_modules_own():
    assert last_json(_in_process.run_main(echo_main, dict(module_args(name='a'), _ansible_check_mode=True))['stdout'])['changed'] is False
    bad = _in_process.run_main(echo_main, module_args())
    assert bad['rc'] == 1
    assert last_json(bad['stdout'])['msg'] == 'missing required arguments: name'


def test_fail_json_is_rc_1_and_a_crash_is_a_traceback_on_stderr():
    failed = _in_process.run_main(failing_main, module_args(name='the thing'))
    assert (failed['rc'], last_json(failed['stdout'])['msg']) == (1, 'Failed to do the thing')
    crashed = _in_process.run_main(crashing_main, module_args())
    assert crashed['rc'] == 1 and crashed['stdout'] == ''
    assert 'RuntimeError: boom in the module' in crashed['stderr']


def test_the_module_globals_are_restored_after_each_run():
    before = basic._ANSIBLE_ARGS  # pylint: disable=protected-access
    _in_process.run_main(echo_main, module_args(name='x'))
    assert basic._ANSIBLE_ARGS is before  # pylint: disable=protected-access
    # A second module in the same process reads its own arguments, not the first one's.
    assert last_json(_in_process.run_main(echo_main, module_args(name='second'))['stdout'])['name'] == 'second'


def action(transport='local', async_val=0, become=False, requires=()):
    plugin = object.__new__(type('Action', (_in_process.InProcessModule,), {'REQUIRES': requires}))
    plugin._connection = SimpleNamespace(transport=transport)  # pylint: disable=protected-access
    plugin._task = SimpleNamespace(async_val=async_val)  # pylint: disable=protected-access
    plugin._play_context = SimpleNamespace(become=become)  # pylint: disable=protected-access
    return plugin


@pytest.mark.parametrize('plugin, task_vars, expected', [
    (action(), {}, True),
    (action(requires=('json',)), {}, True),
    (action(), {'immune_canary_in_process': 'false'}, False),
    (action(), {'immune_canary_in_process': False}, False),
    (action(transport='ssh'), {}, False),
    (action(async_val=60), {}, False),
    (action(become=True), {}, False),
    (action(requires=('json', 'no_such_library_for_canary')), {}, False),
], ids=['local', 'library-present', 'switched-off-text', 'switched-off', 'ssh', 'async', 'become', 'library-missing'])
def test_in_process_only_where_the_module_would_run_in_the_controllers_python(plugin, task_vars, expected):
    assert plugin._in_process(task_vars) is expected  # pylint: disable=protected-access
