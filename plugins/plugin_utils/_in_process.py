# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's modules inside the Ansible worker process.

Every module of this collection runs on the controller (``delegate_to:
localhost``). Run as a plain module, each task starts a new Python that
unpacks the AnsiballZ payload and compiles ``ansible.module_utils.basic``
and the module's imports from it (a zip cannot hold cached bytecode): about
half a second of CPU per task before any work, which is most of what a
rollout spends per host besides waiting.

The action plugin of each module (``plugins/action/<module>.py``) calls the
module's own ``main()`` in the worker process Ansible has already forked for
the task, with the arguments Ansible would have sent it (the same
``_ansible_*`` options, so check mode, diff, ``no_log`` and verbosity behave
the same) and parses its output with Ansible's own result parser. The
argument validation, secret masking and results are the module's, unchanged.

Ansible offers no public interface for this: the runner sets the argument
globals of ``ansible.module_utils.basic`` and calls ``ActionBase`` methods
that every ansible-core release may change. So it is guarded three ways and
never costs a run: it runs only on the ansible-core minors it was tested
with (``TESTED``); it imports what it needs defensively; and before the
first module runs in a worker it runs a self-test module through the same
path and compares the result with what a module process returns. When any
of these fails, the task runs the plain module way and Ansible shows one
warning (per run) that says why.

It also runs the plain module when the task does not run on the controller
(a connection other than ``local``), uses ``become`` or ``async``, when the
controller's Python lacks a library the module needs, or when the host
variable ``immune_canary_in_process`` is false.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import traceback

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

try:
    from ansible.utils.display import Display
except ImportError:  # pragma: no cover - every supported release has it
    Display = None

SWITCH = 'immune_canary_in_process'
PROFILE = 'legacy'
# The ansible-core minors the runner is tested with (make compat-in-process
# runs tests/integration/test_in_process.py on each); any other runs the
# plain module way.
TESTED = ((2, 18), (2, 19), (2, 20), (2, 21))
SELF_TEST_SECRET = 'in-process-self-test-secret'


def _version():
    try:
        from ansible.release import __version__
    except ImportError as exc:  # pragma: no cover
        raise RuntimeError('the ansible-core version cannot be read (%s)' % exc) from exc
    parts = __version__.split('.')
    try:
        return __version__, (int(parts[0]), int(parts[1]))
    except (IndexError, ValueError):
        raise RuntimeError('the ansible-core version %r cannot be read' % __version__) from None


class _Api:
    """What the runner takes from ansible-core, imported once, or the reason it cannot run."""

    def __init__(self):
        self.basic = None
        self.encode_args = None
        self.remove_internal_keys = None
        self.profiled = False
        self.reason = None
        try:
            self._load()
        except Exception as exc:  # pylint: disable=broad-exception-caught  # any failure means: run the plain module
            self.reason = str(exc) or type(exc).__name__

    def _load(self):
        version, minor = _version()
        if minor not in TESTED:
            raise RuntimeError('ansible-core %s is not one of the releases it was tested with (%s)'
                               % (version, ', '.join('%d.%d' % m for m in TESTED)))
        try:
            from ansible.module_utils import basic
        except ImportError as exc:
            raise RuntimeError('ansible-core %s has no ansible.module_utils.basic (%s)' % (version, exc)) from exc
        for name in ('_ANSIBLE_ARGS', 'AnsibleModule'):
            if not hasattr(basic, name):
                raise RuntimeError('ansible-core %s has no ansible.module_utils.basic.%s' % (version, name))
        self.basic = basic
        try:  # ansible-core 2.19 and later: arguments and results carry a serialization profile
            from ansible.module_utils.common.json import Direction, get_module_encoder
        except ImportError:
            Direction = get_module_encoder = None
        if get_module_encoder is not None:
            self.profiled = True
            encoder = get_module_encoder(PROFILE, Direction.CONTROLLER_TO_MODULE)

            def encode_args(args):
                return json.dumps({'ANSIBLE_MODULE_ARGS': args}, cls=encoder).encode()
        else:  # ansible-core 2.18
            from ansible.module_utils.common.json import AnsibleJSONEncoder
            from ansible.module_utils.common.text.converters import to_bytes

            def encode_args(args):
                return to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args}, cls=AnsibleJSONEncoder, vault_to_text=True))
        self.encode_args = encode_args
        try:  # up to ansible-core 2.20 the result is a dict cleaned by this function
            from ansible.vars.clean import remove_internal_keys
            self.remove_internal_keys = remove_internal_keys
        except ImportError:  # 2.21 and later: the parsed result is an object that cleans itself
            self.remove_internal_keys = None


_API = None
_SELF_TEST = []  # the self-test's finding in this process, once it ran


def api():
    """The runner's view of ansible-core, loaded on first use."""
    global _API  # pylint: disable=global-statement
    if _API is None:
        _API = _Api()
    return _API


def run_main(main, args):
    """Call a module's ``main()`` with ``args``; return rc, stdout and stderr as a module process would."""
    loaded = api()
    if loaded.reason:
        raise RuntimeError(loaded.reason)
    basic = loaded.basic
    saved = {name: getattr(basic, name) for name in ('_ANSIBLE_ARGS', '_ANSIBLE_PROFILE', '_PARSED_MODULE_ARGS') if hasattr(basic, name)}
    basic._ANSIBLE_ARGS = loaded.encode_args(args)
    if '_ANSIBLE_PROFILE' in saved:
        basic._ANSIBLE_PROFILE = PROFILE
    if '_PARSED_MODULE_ARGS' in saved:
        basic._PARSED_MODULE_ARGS = None
    out, err = io.StringIO(), io.StringIO()
    rc = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:  # exit_json and fail_json end the module this way
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # pylint: disable=broad-exception-caught  # a module crash is reported as Ansible reports one
        rc = 1
        err.write(traceback.format_exc())
    finally:
        for name, value in saved.items():
            setattr(basic, name, value)
    return dict(rc=rc, stdout=out.getvalue(), stderr=err.getvalue())


def _self_test_main():
    """A module that exercises what the runner relies on: arguments, check mode, no_log masking, warnings, exit."""
    basic = api().basic
    module = basic.AnsibleModule(argument_spec=dict(name=dict(type='str', required=True), token=dict(type='str', no_log=True)),
                                 supports_check_mode=True)
    module.exit_json(changed=not module.check_mode, name=module.params['name'], token_seen=module.params['token'])


def self_test_problem(parse):
    """Why the runner cannot be trusted in this process, or None. ``parse`` turns a run into a result dict."""
    try:
        args = dict(name='self-test', token=SELF_TEST_SECRET, _ansible_check_mode=True, _ansible_no_log=False,
                    _ansible_diff=False, _ansible_verbosity=0, _ansible_module_name='immune.canary.self_test')
        res = run_main(_self_test_main, args)
        data = parse(res)
    except Exception as exc:  # pylint: disable=broad-exception-caught  # any failure means: run the plain module
        return 'its self-test failed: %s' % (str(exc) or type(exc).__name__)
    expected = dict(changed=False, name='self-test')
    got = {key: data.get(key) for key in expected}
    if res['rc'] != 0 or got != expected or data.get('failed') or SELF_TEST_SECRET in json.dumps(data, default=str):
        return 'its self-test returned an unexpected result (rc %s, %s)' % (res['rc'], {k: data.get(k) for k in ('changed', 'name', 'failed', 'msg')})
    return None


def _warn_once(reason):
    message = ('immune.canary runs its modules as plain module processes (slower) because the in-process runner '
               'cannot be used: %s. Set immune_canary_in_process=false to silence this warning.' % reason)
    if Display is not None:
        # Ansible shows a warning once per run, however many workers send it.
        Display().warning(message)
    return message


class InProcessModule(ActionBase):
    """Action plugin base: ``MODULE`` is the module object, ``REQUIRES`` the libraries it cannot run without."""

    MODULE = None
    REQUIRES = ()

    def _in_process(self, task_vars):
        """True where the module would run in the controller's own Python anyway."""
        if not boolean(task_vars.get(SWITCH, True), strict=False):
            return False
        if self._connection.transport not in ('local', 'ansible.builtin.local') or self._task.async_val or self._play_context.become:
            return False
        return all(importlib.util.find_spec(name) is not None for name in self.REQUIRES)

    def _runner_problem(self):
        """Why the runner cannot be used with this ansible-core, or None (checked once per worker process)."""
        loaded = api()
        if loaded.reason:
            return loaded.reason
        if not _SELF_TEST:
            _SELF_TEST.append(self_test_problem(self._parse))
        return _SELF_TEST[0]

    def _parse(self, res):
        """The module's output as Ansible turns a module process's output into a task result."""
        loaded = api()
        if loaded.profiled:
            parsed = self._parse_returned_data(res, PROFILE)
        else:  # ansible-core 2.18 has no profile argument
            parsed = self._parse_returned_data(res)
        if isinstance(parsed, dict):  # up to ansible-core 2.20
            parsed.pop('_ansible_suppress_tmpdir_delete', None)
            if loaded.remove_internal_keys is None:
                raise RuntimeError('the parsed module result is a dict but ansible.vars.clean.remove_internal_keys is missing')
            loaded.remove_internal_keys(parsed)
            return parsed
        # ansible-core 2.21: a task result object, cleaned and turned into a dict the way _execute_module does
        parsed.remove_internal_keys()
        return parsed.as_result_dict(for_round_trip=True)

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        name = 'immune.canary.' + self.MODULE.__name__.rsplit('.', 1)[-1]
        if self._in_process(task_vars):
            problem = self._runner_problem()
            if problem is None:
                args = dict(self._task.args)
                self._update_module_args(name, args, task_vars)
                result.update(self._parse(run_main(self.MODULE.main, args)))
                return result
            _warn_once(problem)
        result.update(self._execute_module(module_name=name, task_vars=task_vars))
        return result
