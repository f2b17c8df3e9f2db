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


@pytest.fixture
def fresh_api(monkeypatch):
    """The runner's view of ansible-core loaded anew (and restored after the test)."""
    monkeypatch.setattr(_in_process, '_API', None)
    monkeypatch.setattr(_in_process, '_SELF_TEST', [])
    return monkeypatch


@pytest.mark.parametrize('version, reason', [
    ('2.99.0', 'ansible-core 2.99.0 is not one of the releases it was tested with (2.18, 2.19, 2.20, 2.21)'),
    ('2.17.14', 'ansible-core 2.17.14 is not one of the releases it was tested with (2.18, 2.19, 2.20, 2.21)'),
    ('devel', "the ansible-core version 'devel' cannot be read"),
])
def test_an_untested_or_unreadable_ansible_core_gives_the_reason(fresh_api, version, reason):
    import ansible.release
    fresh_api.setattr(ansible.release, '__version__', version)
    assert _in_process.api().reason == reason
    with pytest.raises(RuntimeError, match='tested with|cannot be read'):
        _in_process.run_main(echo_main, module_args(name='x'))


def test_a_missing_name_gives_the_reason(fresh_api):
    fresh_api.delattr(basic, '_ANSIBLE_ARGS')
    assert _in_process.api().reason.endswith('has no ansible.module_utils.basic._ANSIBLE_ARGS')


def test_the_supported_release_here_loads(fresh_api):
    assert _in_process.api().reason is None


def parser_that_raises(error):
    raise error


@pytest.mark.parametrize('parse, problem', [
    (lambda res: parser_that_raises(TypeError('unexpected keyword')), 'its self-test failed: unexpected keyword'),
    (lambda res: {'changed': True, 'name': 'self-test'}, 'its self-test returned an unexpected result'),
    (lambda res: dict(last_json(res['stdout']), token_seen=_in_process.SELF_TEST_SECRET), 'its self-test returned an unexpected result'),
], ids=['parser-raises', 'wrong-result', 'secret-unmasked'])
def test_the_self_test_catches_a_parser_that_changed(fresh_api, parse, problem):
    assert _in_process.self_test_problem(parse).startswith(problem)


def test_the_self_test_passes_with_a_faithful_parser(fresh_api):
    assert _in_process.self_test_problem(lambda res: last_json(res['stdout'])) is None


class FakeAction(_in_process.InProcessModule):
    MODULE = SimpleNamespace(__name__='plugins.modules.echo', main=echo_main)

    def __init__(self, parse):
        # pylint: disable=super-init-not-called  # only what run() reads
        self._connection = SimpleNamespace(transport='local', _shell=SimpleNamespace(tmpdir=None))
        self._task = SimpleNamespace(async_val=0, args={'name': 'web1'}, check_mode=False)
        self._play_context = SimpleNamespace(become=False)
        self.parse = parse
        self.executed = []

    def _parse(self, res):
        return self.parse(res)

    def _update_module_args(self, module_name, module_args, task_vars, ignore_unknown_opts=False):  # pylint: disable=redefined-outer-name
        module_args.update(_ansible_check_mode=False, _ansible_no_log=False, _ansible_diff=False, _ansible_verbosity=0,
                           _ansible_module_name=module_name)

    def _execute_module(self, module_name=None, module_args=None, tmp=None, task_vars=None, **kwargs):
        self.executed.append(module_name)
        return {'changed': False, 'ran': 'module process'}


def test_run_falls_back_to_the_module_process_with_a_warning_when_the_self_test_fails(fresh_api):
    warned = []
    fresh_api.setattr(_in_process, '_warn_once', warned.append)
    fresh_api.setattr(_in_process.ActionBase, 'run', lambda self, tmp=None, task_vars=None: {})
    broken = FakeAction(lambda res: {'changed': 'maybe'})
    assert broken.run(task_vars={}) == {'changed': False, 'ran': 'module process'}
    assert broken.executed == ['immune.canary.echo']
    assert warned and warned[0].startswith('its self-test returned an unexpected result')
    # The finding holds for the worker process: the next task does not test again, it falls back at once.
    assert FakeAction(lambda res: last_json(res['stdout'])).run(task_vars={})['ran'] == 'module process'


def test_run_stays_in_process_when_the_self_test_passes(fresh_api):
    fresh_api.setattr(_in_process.ActionBase, 'run', lambda self, tmp=None, task_vars=None: {})
    good = FakeAction(lambda res: last_json(res['stdout']))
    result = good.run(task_vars={})
    assert good.executed == [] and result['name'] == 'web1' and result['changed'] is True
