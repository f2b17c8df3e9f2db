"""Run a module's real ``main()`` in this process: the real argument spec,
validation and clients, with its exit, failure and warnings caught."""

from __future__ import annotations

import contextlib
import importlib
import json
from unittest import mock

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core 2.18 has no public helper: what its own unit tests do
    @contextlib.contextmanager
    def patch_module_args(args):
        payload = dict(args, _ansible_remote_tmp='/tmp', _ansible_keep_remote_files=False)
        with mock.patch.object(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': payload}))):
            yield


class _Exit(Exception):
    pass


class _Fail(Exception):
    pass


def run_main(module, args, check=False):
    """(failed, result, warnings) of one run of ``module``'s main() with ``args``.

    Warnings are taken where the module gives them (``AnsibleModule.warn``):
    once a controller-side plugin has been loaded in this process, ansible-core
    shows them at once instead of collecting them for the result."""
    code = importlib.import_module('ansible_collections.immune.canary.plugins.modules.' + module)
    warned = []

    def exit_json(_self, **result):
        raise _Exit(result)

    def fail_json(_self, msg, **result):
        raise _Fail(dict(result, msg=msg))

    def warn(_self, warning):
        warned.append(warning)

    module_args = dict(args, _ansible_check_mode=check)
    with patch_module_args(module_args), mock.patch.object(basic.AnsibleModule, 'exit_json', exit_json), \
            mock.patch.object(basic.AnsibleModule, 'fail_json', fail_json), mock.patch.object(basic.AnsibleModule, 'warn', warn):
        try:
            code.main()
        except _Exit as done:
            return False, done.args[0], warned
        except _Fail as failed:
            return True, failed.args[0], warned
    raise AssertionError('%s.main() returned without exit_json or fail_json' % module)
