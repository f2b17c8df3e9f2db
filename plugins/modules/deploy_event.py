#!/usr/bin/python
# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_event
short_description: Record one rollout step as an event document in Elasticsearch
version_added: 0.1.0
description:
  - Writes one document per rollout step - an audit trail, deploy annotations for Kibana and Grafana, and the failure
    metric of the rollout.
  - The document holds C(@timestamp) (UTC), C(app), C(version), C(from_version), C(host), C(phase), C(outcome),
    C(reason), C(run_id), C(duration), C(data) and C(event_id); nothing else, and never a connection option.
  - With O(event_id) the write is idempotent - the document is created with that id, and a second run finds it and
    reports C(changed=false). Without it, every run writes a new event.
  - In check mode nothing is written; with O(event_id) the module looks the id up to predict C(changed).
author:
  - immune.canary contributors (@immune-canary)
attributes:
  action_group:
    membership:
      - immune.canary.elasticsearch
options:
  index:
    description:
      - Index to write to. Default is a monthly index named after the event's time, C(deploy-events-YYYY.MM).
    type: str
  app:
    description: Application (IIS site base name), for example V(app.example.com).
    type: str
    required: true
  version:
    description: The version being rolled out.
    type: str
  from_version:
    description: The version running before.
    type: str
  host:
    description: The server this step is about; unset for rollout-wide events.
    type: str
  phase:
    description: The rollout step.
    type: str
    required: true
    choices: [started, drained, deployed, warmed, admitted, promoted, reverted, aborted, succeeded, failed]
  outcome:
    description: Outcome of the step, for example V(success) or V(failure).
    type: str
  reason:
    description: Why (for example the health gate's message on failure).
    type: str
  run_id:
    description: Identifier of the rollout run, to group its events.
    type: str
  duration:
    description: Seconds the step took.
    type: float
  data:
    description:
      - Extra fields, stored under C(data).
      - Keys that look like secrets (containing C(password), C(passwd), C(secret), C(token), C(api_key), C(apikey),
        C(credential) or C(private_key)) are refused.
    type: dict
  event_id:
    description:
      - Document id. Makes the write idempotent (create with that id; an existing id is left alone).
    type: str
  timestamp:
    description:
      - Time of the event, ISO-8601; default now. Also picks the default monthly index.
    type: str
extends_documentation_fragment:
  - immune.canary.attributes
  - immune.canary.attributes.CHECK_MODE_FULL
  - immune.canary.attributes.DIFF_MODE_FULL
  - immune.canary.elasticsearch
"""

EXAMPLES = r"""
- name: Record that the canary was admitted
  immune.canary.deploy_event:
    es_hosts: ["https://es.example.com:9200"]
    es_api_key: "{{ vault_es_api_key }}"
    app: app.example.com
    version: "3457"
    from_version: "3456"
    host: "{{ inventory_hostname }}"
    phase: admitted
    run_id: "{{ rollout_run_id }}"
    event_id: "{{ rollout_run_id }}-{{ inventory_hostname }}-admitted"
  delegate_to: localhost

- name: Record the failure that aborted the rollout
  immune.canary.deploy_event:
    es_hosts: ["https://es.example.com:9200"]
    app: app.example.com
    version: "3457"
    host: "{{ inventory_hostname }}"
    phase: failed
    outcome: failure
    reason: "{{ gate_result.msg }}"
    duration: "{{ gate_result.elapsed }}"
    data:
      verdict: "{{ gate_result.verdict }}"
  delegate_to: localhost
"""

RETURN = r"""
changed:
  description: Whether an event was (or in check mode would be) written.
  returned: always
  type: bool
index:
  description: The index written to.
  returned: always
  type: str
  sample: deploy-events-2026.05
id:
  description: The document id; null in check mode without O(event_id).
  returned: always
  type: str
  sample: run-42-web-01-admitted
result:
  description: C(created), C(exists) (the O(event_id) was there already), or C(skipped) in check mode.
  returned: always
  type: str
  sample: created
event:
  description: The event document (written or that would be written).
  returned: always
  type: dict
  sample: {"@timestamp": "2026-05-01T12:00:00.000Z", "app": "app.example.com", "phase": "admitted"}
elapsed:
  description: Seconds the module ran.
  returned: always
  type: float
  sample: 0.05
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch, fail_from_error  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._deploy_event import PHASES, EventWriter, build_event  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._elasticsearch import (  # noqa: E402
    ELASTICSEARCH_IMPORT_ERROR,
    HAS_ELASTICSEARCH,
    EsClient,
    es_argument_spec,
    es_module_kwargs,
)


def argument_spec():
    return es_argument_spec(
        index=dict(type='str'),
        app=dict(type='str', required=True),
        version=dict(type='str'),
        from_version=dict(type='str'),
        host=dict(type='str'),
        phase=dict(type='str', required=True, choices=list(PHASES)),
        outcome=dict(type='str'),
        reason=dict(type='str'),
        run_id=dict(type='str'),
        duration=dict(type='float'),
        data=dict(type='dict'),
        event_id=dict(type='str'),
        timestamp=dict(type='str'),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **es_module_kwargs())
    if not HAS_ELASTICSEARCH:
        module.fail_json(msg=missing_required_lib('elasticsearch'), exception=str(ELASTICSEARCH_IMPORT_ERROR))
    params = module.params
    watch = Stopwatch()
    client = None
    try:
        index, event = build_event(params)
        client = EsClient(params)
        for warning in client.warnings:
            module.warn(warning)
        outcome = EventWriter(client).write(index, event, params['event_id'], check_mode=module.check_mode)
    except CanaryError as exc:
        fail_from_error(module, exc, changed=False, elapsed=watch.elapsed())
    finally:
        if client is not None:
            client.close()
    result = dict(changed=outcome['changed'], index=index, id=outcome['id'], result=outcome['result'], event=event, elapsed=watch.elapsed())
    if module._diff:
        result['diff'] = dict(before={}, after=event if outcome['changed'] else {})
    module.exit_json(**result)


if __name__ == '__main__':
    main()
