# Copyright: immune.canary maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The rollout report as JUnit XML, one test case per host."""

from __future__ import annotations

DOCUMENTATION = r'''
name: junit_report
short_description: Turn a rollout report into JUnit XML, one test case per host
version_added: 0.1.0
description:
  - Takes the report the C(report) tasks of the C(immune.canary.rollout) role write as JSON (O(_input)) and returns a
    JUnit XML document that CI servers (the Jenkins C(junit) step, GitLab, Azure DevOps) read.
  - One test suite for the run, one test case per host. A host that was promoted (or checked in check mode, already
    right, or put back by a rollback) passes; a host that was reverted or reconciled, or whose revert or rollback
    failed, is a failure whose message is the failed step and the reason;
    a host the run did not touch is skipped; a host without a recorded outcome (its revert failed) is an error.
  - Characters XML 1.0 cannot carry are dropped from messages.
positional: _input
options:
  _input:
    description:
      - The rollout report, a dictionary with C(app), C(version), C(run_id), C(started_at), C(result) and C(hosts)
        (host name to its outcome with C(outcome), C(site), C(failed_step), C(reason), C(steps) with seconds per step).
    type: dict
    required: true
  suite_name:
    description: Name of the test suite; by default C(rollout <app> <version>).
    type: str
'''

EXAMPLES = r'''
- name: Write the JUnit report of the run
  ansible.builtin.copy:
    content: "{{ report | immune.canary.junit_report }}"
    dest: rollout-junit.xml
    mode: "0644"
'''

RETURN = r'''
_value:
  description: The JUnit XML document, with an XML declaration, UTF-8.
  type: str
'''

import json  # noqa: E402
import re  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402

from ansible.errors import AnsibleFilterError  # noqa: E402

PASSED = frozenset(('promoted', 'checked', 'unchanged', 'rolled_back'))
# A revert or rollback that failed (the host may have been put back in service on the site it still ran).
FAILED = frozenset(('reverted', 'reconciled', 'reverted_failed', 'reconciled_failed', 'rolled_back_failed'))
SKIPPED = frozenset(('untouched',))
# XML 1.0 allows tab, newline, carriage return and these ranges; nothing else.
_NOT_XML = re.compile('[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')


def _text(value):
    return _NOT_XML.sub('', '' if value is None else str(value))


def _seconds(steps):
    total = 0.0
    for value in (steps or {}).values():
        try:
            total += float(value)
        except (TypeError, ValueError):
            continue
    return total


def _classname(app):
    # Jenkins splits a class name at dots into packages; keep the app one name.
    return 'rollout.' + re.sub(r'[^A-Za-z0-9_-]', '_', _text(app) or 'app')


def _reason(entry):
    step, reason = _text(entry.get('failed_step')), ' '.join(_text(entry.get('reason')).split())
    if step and reason:
        return '%s: %s' % (step, reason)
    return step or reason or 'reverted'


def junit_report(report, suite_name=None):
    """Return the JUnit XML document (str) for a rollout report (dict)."""
    if not isinstance(report, dict) or not isinstance(report.get('hosts'), dict):
        raise AnsibleFilterError('junit_report expects the rollout report, a dictionary with a "hosts" dictionary; got %s' % type(report).__name__)
    app, version = _text(report.get('app')), _text(report.get('version'))
    suite = ET.Element('testsuite', name=_text(suite_name) or 'rollout %s %s' % (app, version))
    properties = ET.SubElement(suite, 'properties')
    for key in ('app', 'version', 'run_id', 'result', 'started_at', 'finished_at'):
        ET.SubElement(properties, 'property', name=key, value=_text(report.get(key)))
    counts = {'tests': 0, 'failures': 0, 'errors': 0, 'skipped': 0}
    total = 0.0
    for host in sorted(report['hosts']):
        entry = report['hosts'][host] if isinstance(report['hosts'][host], dict) else {}
        outcome = _text(entry.get('outcome')) or 'unknown'
        seconds = _seconds(entry.get('steps'))
        total += seconds
        case = ET.SubElement(suite, 'testcase', classname=_classname(app), name=_text(host), time='%.3f' % seconds)
        counts['tests'] += 1
        if outcome in FAILED:
            counts['failures'] += 1
            ET.SubElement(case, 'failure', type=outcome, message='%s %s: %s' % (outcome, _text(entry.get('site')), _reason(entry)))
        elif outcome in SKIPPED:
            counts['skipped'] += 1
            ET.SubElement(case, 'skipped', message='not touched by this run (result: %s); runs %s' % (_text(report.get('result')), _text(entry.get('site'))))
        elif outcome not in PASSED:
            counts['errors'] += 1
            message = 'no outcome was recorded for %s (outcome: %s); check it with playbooks/status.yml' % (_text(host), outcome)
            ET.SubElement(case, 'error', type=outcome, message=message)
        out = ET.SubElement(case, 'system-out')
        out.text = _text(json.dumps(entry, sort_keys=True, default=str, indent=1))
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set('time', '%.3f' % total)
    if report.get('started_at'):
        suite.set('timestamp', _text(report['started_at']).rstrip('Z'))
    suites = ET.Element('testsuites', name=suite.get('name'), tests=str(counts['tests']), failures=str(counts['failures']),
                        errors=str(counts['errors']), skipped=str(counts['skipped']), time='%.3f' % total)
    suites.append(suite)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding='unicode') + '\n'


class FilterModule:
    """immune.canary filters."""

    def filters(self):
        return {'junit_report': junit_report}
