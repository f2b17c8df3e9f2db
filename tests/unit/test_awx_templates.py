"""extras/awx: the job templates' surveys ask only for role variables, with
the role's types, choices and required flags, so they cannot drift apart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AWX = ROOT / 'extras' / 'awx'
TEMPLATES = json.loads((AWX / 'job_templates.json').read_text())['job_templates']
SPECS = yaml.safe_load((ROOT / 'roles' / 'rollout' / 'meta' / 'argument_specs.yml').read_text())['argument_specs']
# The role entry point whose options each playbook takes.
ENTRY = {'playbooks/deploy.yml': 'main', 'playbooks/rollback.yml': 'rollback', 'playbooks/status.yml': 'status'}
# Survey question types (AWX) and the role option types their answers satisfy.
COMPATIBLE = {
    'text': {'str', 'raw', 'path'},
    'textarea': {'str', 'raw'},
    'password': {'str', 'raw'},
    'integer': {'int', 'float', 'raw'},
    'float': {'float', 'raw'},
    'multiplechoice': {'str', 'raw', 'bool'},
    'multiselect': {'list'},
}
BOOL_ANSWERS = {'true', 'false'}


def _questions():
    for template in TEMPLATES:
        for question in template['related']['survey_spec']['spec']:
            yield pytest.param(template, question, id='%s:%s' % (template['name'], question['variable']))


def test_the_file_is_an_awx_export_of_three_job_templates():
    assert [t['name'] for t in TEMPLATES] == ['immune.canary deploy', 'immune.canary rollback', 'immune.canary status']
    for template in TEMPLATES:
        assert template['natural_key'] == {'name': template['name'], 'type': 'job_template', 'organization': {'name': 'Default', 'type': 'organization'}}
        assert template['project']['type'] == 'project' and template['inventory']['type'] == 'inventory'
        assert template['execution_environment'] == {'name': 'immune.canary', 'type': 'execution_environment'}
        assert template['survey_enabled'] is True
        assert (ROOT / template['playbook']).is_file(), template['playbook']
        assert template['playbook'] in ENTRY
        variables = [q['variable'] for q in template['related']['survey_spec']['spec']]
        assert len(variables) == len(set(variables)), variables


@pytest.mark.parametrize('template, question', list(_questions()))
def test_every_survey_question_is_a_role_option_of_a_compatible_type(template, question):
    options = SPECS[ENTRY[template['playbook']]]['options']
    assert question['variable'] in options, '%s is not an option of the role entry point %s' % (question['variable'], ENTRY[template['playbook']])
    spec = options[question['variable']]
    assert question['type'] in COMPATIBLE, question['type']
    assert spec['type'] in COMPATIBLE[question['type']], (question['type'], spec['type'])
    assert question['question_name'] and question['question_description']
    # A required option is a required question; an optional one has the role's own default.
    assert question['required'] is bool(spec.get('required')), question['variable']
    if not spec.get('required'):
        assert 'default' in question
        assert str(question['default']) == str(spec['default']).lower() if spec['type'] == 'bool' else str(question['default']) == str(spec['default'])


@pytest.mark.parametrize('template, question', list(_questions()))
def test_choices_agree_with_the_role(template, question):
    spec = SPECS[ENTRY[template['playbook']]]['options'][question['variable']]
    if question['type'] in ('multiplechoice', 'multiselect'):
        choices = question['choices']
        assert isinstance(choices, list) and choices, question['variable']
        if spec['type'] == 'bool':
            assert set(choices) == BOOL_ANSWERS
        elif 'choices' in spec:
            assert sorted(choices) == sorted(spec['choices'])
        if 'default' in question and question['type'] == 'multiplechoice':
            assert question['default'] in choices
    else:
        assert 'choices' not in spec, '%s has choices in the role; the survey must offer exactly those' % question['variable']


@pytest.mark.parametrize('template, question', list(_questions()))
def test_limits_admit_the_default_and_valid_answers(template, question):
    default = question.get('default')
    if question['type'] in ('text', 'textarea', 'password'):
        assert 0 <= question['min'] <= question['max']
        if default not in (None, ''):
            assert question['min'] <= len(default) <= question['max']
        if question['required']:
            assert question['min'] >= 1
    elif question['type'] in ('integer', 'float'):
        assert question['min'] <= default <= question['max']


def test_the_checksum_question_takes_exactly_one_sha256_checksum():
    (question,) = [q for q in TEMPLATES[0]['related']['survey_spec']['spec'] if q['variable'] == 'rollout_package_checksum']
    assert question['min'] == question['max'] == len('sha256:' + '0' * 64)


def test_the_deploy_survey_asks_for_what_a_release_needs():
    asked = {q['variable'] for q in TEMPLATES[0]['related']['survey_spec']['spec']}
    assert asked >= {'rollout_app', 'rollout_version', 'rollout_package_url', 'rollout_package_checksum', 'rollout_serial',
                     'rollout_bake_seconds', 'rollout_stop_after_first', 'rollout_allow_mixed'}
    assert {q['variable'] for q in TEMPLATES[1]['related']['survey_spec']['spec']} == {'rollout_app', 'rollback_to'}


@pytest.mark.parametrize('template', TEMPLATES, ids=lambda t: t['name'])
def test_extra_vars_are_role_options(template):
    extra = yaml.safe_load(template['extra_vars']) or {}
    options = SPECS[ENTRY[template['playbook']]]['options']
    assert sorted(set(extra) - set(options)) == []


def test_the_controller_playbook_reads_only_fields_every_template_has():
    text = (AWX / 'configure.yml').read_text()
    fields = set(re.findall(r'item\.([a-z_]+)', text))
    assert fields >= {'name', 'playbook', 'extra_vars', 'survey_enabled', 'related'}
    for template in TEMPLATES:
        assert sorted(fields - set(template)) == [], template['name']
