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
    plays = yaml.safe_load((AWX / 'configure.yml').read_text())
    (task,) = [t for t in plays[0]['tasks'] if 'ansible.controller.job_template' in t]
    fields = set(re.findall(r'item\.([a-z_]+)', json.dumps(task)))
    assert fields >= {'name', 'playbook', 'extra_vars', 'survey_enabled', 'related'}
    for template in TEMPLATES:
        assert sorted(fields - set(template)) == [], template['name']


def test_templates_run_enough_forks_to_revert_a_fleet_in_parallel():
    # 0 would mean Ansible's default of 5: a reconcile of 20 hosts in four rounds.
    forks = {t['name']: t['forks'] for t in TEMPLATES}
    assert forks == {'immune.canary deploy': 25, 'immune.canary rollback': 25, 'immune.canary status': 25}
    plays = yaml.safe_load((AWX / 'configure.yml').read_text())
    (task,) = [t for t in plays[0]['tasks'] if 'ansible.controller.job_template' in t]
    assert task['ansible.controller.job_template']['forks'] == '{{ item.forks }}'


WORKFLOWS = json.loads((AWX / 'workflow.json').read_text())['workflow_job_templates']


def _edges(workflow, kind):
    return {(n['identifier'], t['identifier']) for n in workflow['workflow_nodes'] for t in n['related'][kind]}


def test_the_workflow_runs_the_first_batch_asks_a_person_then_the_rest_or_rolls_back():
    (workflow,) = WORKFLOWS
    nodes = {n['identifier']: n for n in workflow['workflow_nodes']}
    names = {t['name'] for t in TEMPLATES}
    for node in nodes.values():
        template = node['unified_job_template']
        assert set(node['related']) == {'success_nodes', 'failure_nodes', 'always_nodes', 'credentials'}
        if template['type'] == 'job_template':
            assert template['name'] in names, template['name']
        else:
            assert template['type'] == 'workflow_approval' and template['timeout'] > 0
    first, approve, rest, back = (nodes[i] for i in ('first-batch', 'approve', 'rest', 'roll-back-first-batch'))
    assert first['extra_data'] == {'rollout_stop_after_first': True}
    assert rest['extra_data'] == {'rollout_allow_mixed': True}
    assert (first['unified_job_template']['name'], rest['unified_job_template']['name']) == ('immune.canary deploy',) * 2
    assert back['unified_job_template']['name'] == 'immune.canary rollback' and back['extra_data'] == {}
    assert approve['unified_job_template']['type'] == 'workflow_approval'
    # Approved: the rest. Denied or timed out: the first batch back on its fallback (no version named).
    assert _edges(workflow, 'success_nodes') == {('first-batch', 'approve'), ('approve', 'rest')}
    assert _edges(workflow, 'failure_nodes') == {('approve', 'roll-back-first-batch')}
    assert _edges(workflow, 'always_nodes') == set()
    assert SPECS['rollback']['options']['rollback_to']['default'] == ''


def test_the_workflow_survey_is_the_deploy_survey_without_what_the_nodes_set():
    (workflow,) = WORKFLOWS
    deploy = [q for q in TEMPLATES[0]['related']['survey_spec']['spec'] if q['variable'] not in ('rollout_stop_after_first', 'rollout_allow_mixed')]
    assert workflow['survey_enabled'] is True and workflow['survey_spec']['spec'] == deploy
    assert workflow['allow_simultaneous'] is False
    for node in workflow['workflow_nodes']:
        for variable in node.get('extra_data', {}):
            # A node's variable must be one its template asks for (AWX drops the rest) and a role option.
            template = next(t for t in TEMPLATES if t['name'] == node['unified_job_template']['name'])
            assert variable in {q['variable'] for q in template['related']['survey_spec']['spec']}
            assert variable in SPECS[ENTRY[template['playbook']]]['options']


def test_the_controller_playbook_configures_the_workflow_from_its_file():
    plays = yaml.safe_load((AWX / 'configure.yml').read_text())
    (task,) = [t for t in plays[0]['tasks'] if 'ansible.controller.workflow_job_template' in t]
    assert 'workflow.json' in task['loop']
    arguments = task['ansible.controller.workflow_job_template']
    assert arguments['workflow_nodes'] == '{{ item.workflow_nodes }}' and arguments['destroy_current_nodes'] is True
    used = set(re.findall(r'item\.([a-z_]+)', json.dumps(arguments)))
    for workflow in WORKFLOWS:
        assert sorted(used - set(workflow)) == []
