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

It falls back to running the plain module when the task does not run on the
controller (a connection other than ``local``), uses ``become`` or
``async``, when the controller's Python lacks a library the module needs, or
when the host variable ``immune_canary_in_process`` is false.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import traceback

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.vars.clean import remove_internal_keys

PROFILE = 'legacy'
SWITCH = 'immune_canary_in_process'

try:  # ansible-core 2.19 and later: arguments and results carry a serialization profile
    from ansible.module_utils.common.json import Direction, get_module_encoder

    PROFILED = True

    def _args_payload(args):
        """The bytes a module reads as its arguments, encoded as Ansible encodes them for a module process."""
        return json.dumps({'ANSIBLE_MODULE_ARGS': args}, cls=get_module_encoder(PROFILE, Direction.CONTROLLER_TO_MODULE)).encode()

except ImportError:  # ansible-core 2.18
    from ansible.module_utils.common.json import AnsibleJSONEncoder

    PROFILED = False

    def _args_payload(args):
        """The bytes a module reads as its arguments, encoded as Ansible encodes them for a module process."""
        return to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args}, cls=AnsibleJSONEncoder, vault_to_text=True))


def run_main(main, args):
    """Call a module's ``main()`` with ``args``; return rc, stdout and stderr as a module process would."""
    saved = {name: getattr(basic, name) for name in ('_ANSIBLE_ARGS', '_ANSIBLE_PROFILE', '_PARSED_MODULE_ARGS') if hasattr(basic, name)}
    basic._ANSIBLE_ARGS = _args_payload(args)
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


class InProcessModule(ActionBase):
    """Action plugin base: ``MODULE`` is the module object, ``REQUIRES`` the libraries it cannot run without."""

    MODULE = None
    REQUIRES = ()

    def _in_process(self, task_vars):
        if not boolean(task_vars.get(SWITCH, True), strict=False):
            return False
        if self._connection.transport not in ('local', 'ansible.builtin.local') or self._task.async_val or self._play_context.become:
            return False
        return all(importlib.util.find_spec(name) is not None for name in self.REQUIRES)

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        name = 'immune.canary.' + self.MODULE.__name__.rsplit('.', 1)[-1]
        if not self._in_process(task_vars):
            result.update(self._execute_module(module_name=name, task_vars=task_vars))
            return result
        args = dict(self._task.args)
        self._update_module_args(name, args, task_vars)
        res = run_main(self.MODULE.main, args)
        if PROFILED:
            data = self._parse_returned_data(res, PROFILE)
        else:  # ansible-core 2.18 has no profile argument
            data = self._parse_returned_data(res)
        data.pop('_ansible_suppress_tmpdir_delete', None)
        remove_internal_keys(data)
        result.update(data)
        return result
