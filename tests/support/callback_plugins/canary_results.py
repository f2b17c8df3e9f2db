# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only callback: append every task result, as the user would see it,
to the JSON-lines file named by CANARY_RESULTS_FILE."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: canary_results
type: notification
short_description: write task results to a JSON-lines file for tests
description:
  - Writes each task result to the file named by the CANARY_RESULTS_FILE environment variable.
  - Writes a line when a task starts on a host to the file named by CANARY_PROGRESS_FILE, so that
    a test can act while the playbook runs.
requirements: [enable in configuration]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'notification'
    CALLBACK_NAME = 'canary_results'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._task_started = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_started[task._uuid] = time.time()

    def v2_runner_on_start(self, host, task):
        path = os.environ.get('CANARY_PROGRESS_FILE')
        if not path:
            return
        record = {'event': 'start', 'host': host.get_name(), 'task': task.get_name(), 'time': time.time()}
        with open(path, 'a', encoding='utf-8') as handle:
            handle.write(json.dumps(record) + '\n')
            handle.flush()

    def _write(self, status, result):
        path = os.environ.get('CANARY_RESULTS_FILE')
        if not path:
            return
        now = time.time()
        record = {
            'status': status,
            'host': result._host.get_name(),
            'task': result._task.get_name(),
            'started': self._task_started.get(result._task._uuid, now),
            'ended': now,
            'result': json.loads(self._dump_results(result._result)),
        }
        with open(path, 'a', encoding='utf-8') as handle:
            handle.write(json.dumps(record) + '\n')

    def v2_runner_on_ok(self, result):
        self._write('ok', result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write('failed', result)

    def v2_runner_on_skipped(self, result):
        self._write('skipped', result)

    def v2_runner_on_unreachable(self, result):
        self._write('unreachable', result)
