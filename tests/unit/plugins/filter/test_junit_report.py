"""immune.canary.junit_report: the rollout report as JUnit XML that Jenkins reads."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.immune.canary.plugins.filter.junit_report import FilterModule, junit_report

STEPS = {'drain': 1.5, 'stop': 0.25, 'package': 2, 'start': 0.25, 'warm': 3, 'admit': 1, 'bake': 6}


def _report(hosts, result='aborted'):
    return {'app': 'app.example.com', 'version': '3', 'run_id': 'app.example.com-3-20261129T120000Z',
            'started_at': '2026-11-29T12:00:00.000001Z', 'finished_at': '2026-11-29T12:01:00Z', 'result': result, 'hosts': hosts}


def _parse(xml):
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    root = ET.fromstring(xml.encode('utf-8'))
    assert root.tag == 'testsuites'
    (suite,) = root.findall('testsuite')
    return root, suite, {case.get('name'): case for case in suite.findall('testcase')}


def test_an_aborted_rollout_has_one_failure_per_reverted_host_and_skips_the_untouched():
    xml = junit_report(_report({
        'web1': {'outcome': 'reconciled', 'site': 'app.example.com-2', 'failed_step': 'reconcile',
                 'reason': 'the rollout was aborted on another host', 'steps': {'drain': 1, 'swap': 0.5, 'warm': 2, 'admit': 1}},
        'web2': {'outcome': 'reverted', 'site': 'app.example.com-2', 'failed_step': 'Bake in production and let Elasticsearch decide',
                 'reason': 'gate failed:\n  errors 0.21 > 0.05', 'steps': {'drain': 1, 'swap': 0.5, 'warm': 2, 'admit': 1.5}},
        'web3': {'outcome': 'untouched', 'site': 'app.example.com-2', 'fallback': 'app.example.com-2'},
    }))
    root, suite, cases = _parse(xml)
    assert {k: suite.get(k) for k in ('tests', 'failures', 'errors', 'skipped', 'time')} == {
        'tests': '3', 'failures': '2', 'errors': '0', 'skipped': '1', 'time': '9.500'}
    assert {k: root.get(k) for k in ('tests', 'failures', 'errors', 'skipped')} == {'tests': '3', 'failures': '2', 'errors': '0', 'skipped': '1'}
    assert suite.get('name') == 'rollout app.example.com 3'
    assert suite.get('timestamp') == '2026-11-29T12:00:00.000001'
    assert sorted(cases) == ['web1', 'web2', 'web3']
    assert {case.get('classname') for case in cases.values()} == {'rollout.app_example_com'}
    failure = cases['web2'].find('failure')
    assert failure.get('type') == 'reverted'
    assert failure.get('message') == 'reverted app.example.com-2: Bake in production and let Elasticsearch decide: gate failed: errors 0.21 > 0.05'
    assert cases['web2'].get('time') == '5.000'
    assert cases['web1'].find('failure').get('message') == 'reconciled app.example.com-2: reconcile: the rollout was aborted on another host'
    assert cases['web3'].find('failure') is None
    assert cases['web3'].find('skipped').get('message') == 'not touched by this run (result: aborted); runs app.example.com-2'
    assert '"outcome": "reverted"' in cases['web2'].find('system-out').text
    props = {p.get('name'): p.get('value') for p in suite.find('properties')}
    assert props == {'app': 'app.example.com', 'version': '3', 'run_id': 'app.example.com-3-20261129T120000Z', 'result': 'aborted',
                     'started_at': '2026-11-29T12:00:00.000001Z', 'finished_at': '2026-11-29T12:01:00Z'}


@pytest.mark.parametrize('outcome, child', [
    ('promoted', None),
    ('checked', None),
    ('unchanged', None),
    ('rolled_back', None),
    ('reverted', 'failure'),
    ('reconciled', 'failure'),
    ('reverted_failed', 'failure'),
    ('reconciled_failed', 'failure'),
    ('rolled_back_failed', 'failure'),
    ('untouched', 'skipped'),
    ('unknown', 'error'),
    ('', 'error'),
])
def test_each_outcome_maps_to_one_junit_verdict(outcome, child):
    _root, suite, cases = _parse(junit_report(_report({'web1': {'outcome': outcome, 'site': 'app.example.com-3', 'steps': STEPS}})))
    verdicts = [c.tag for c in cases['web1'] if c.tag in ('failure', 'error', 'skipped')]
    assert verdicts == ([child] if child else [])
    expected = {'failure': 'failures', 'error': 'errors', 'skipped': 'skipped'}
    assert {k: suite.get(k) for k in ('failures', 'errors', 'skipped')} == {
        k: '1' if expected.get(child) == k else '0' for k in ('failures', 'errors', 'skipped')}
    assert cases['web1'].get('time') == '14.000'


def test_a_promoted_fleet_passes_every_host():
    hosts = {h: {'outcome': 'promoted', 'site': 'app.example.com-3', 'steps': STEPS} for h in ('web1', 'web2')}
    _root, suite, cases = _parse(junit_report(_report(hosts, result='promoted'), suite_name='deploy #42'))
    assert suite.get('name') == 'deploy #42'
    assert (suite.get('tests'), suite.get('failures'), suite.get('errors'), suite.get('skipped')) == ('2', '0', '0', '0')
    assert all(len([c for c in case if c.tag != 'system-out']) == 0 for case in cases.values())


def test_a_host_without_an_outcome_is_an_error_not_a_pass():
    _root, suite, cases = _parse(junit_report(_report({'web1': {}, 'web2': None})))
    assert suite.get('errors') == '2'
    assert cases['web1'].find('error').get('message') == 'no outcome was recorded for web1 (outcome: unknown); check it with playbooks/status.yml'


def test_markup_and_control_characters_in_reasons_stay_well_formed():
    reason = 'gate failed: <script>&"\'</script>\x00\x1b[31mred\x07 \ud800 done'
    _root, _suite, cases = _parse(junit_report(_report({'web<1>': {'outcome': 'reverted', 'failed_step': 'bake', 'reason': reason}})))
    assert cases['web<1>'].find('failure').get('message') == 'reverted : bake: gate failed: <script>&"\'</script>[31mred done'


def test_steps_that_are_not_numbers_do_not_count():
    _root, _suite, cases = _parse(junit_report(_report({'web1': {'outcome': 'promoted', 'steps': {'drain': '1.5', 'warm': 'n/a', 'bake': None}}})))
    assert cases['web1'].get('time') == '1.500'


@pytest.mark.parametrize('bad', [None, [], 'report', {'hosts': []}, {'app': 'x'}])
def test_anything_but_a_report_is_refused(bad):
    with pytest.raises(AnsibleFilterError, match='junit_report expects the rollout report'):
        junit_report(bad)


def test_the_filter_is_registered():
    assert FilterModule().filters() == {'junit_report': junit_report}
