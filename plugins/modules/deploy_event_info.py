#!/usr/bin/python
# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_event_info
short_description: Read the newest deploy events of an application from Elasticsearch
version_added: 0.1.0
description:
  - Returns the newest event documents written by M(immune.canary.deploy_event) that match a selection, newest first -
    for example the fallback versions recorded by the last C(started) event of an application, which the rollback
    playbook needs.
  - Sends one C(_search) request. Each selected value (O(app), O(phase), O(run_id), O(host)) becomes one C(term) filter;
    no query string is ever built from values, so quotes, colons, C(*), C(OR) or backslashes in a value select exactly
    the documents holding that value.
  - Results are sorted on C(@timestamp), newest first. An index pattern that matches no index, or no matching event, gives
    an empty RV(events) list, not an error. A named index that does not exist is an error.
  - The module only reads; it always returns C(changed=false). Check mode reads exactly as a normal run.
author:
  - immune.canary contributors (@immune-canary)
attributes:
  action_group:
    membership:
      - immune.canary.elasticsearch
options:
  index:
    description:
      - Index name, pattern or comma-separated list to search.
    type: str
    default: deploy-events-*
  app:
    description: Application (IIS site base name) whose events to read, for example V(app.example.com).
    type: str
    required: true
  phase:
    description: Only events of this rollout step.
    type: str
    choices: [started, drained, deployed, warmed, admitted, promoted, reverted, aborted, succeeded, failed]
  run_id:
    description: Only events of this rollout run.
    type: str
  host:
    description: Only events about this server.
    type: str
  limit:
    description: How many events to return at most (the newest ones), from 1 to 100.
    type: int
    default: 1
  keyword_suffix:
    description:
      - Suffix added to the field names in the C(term) filters.
      - The default fits the dynamic mapping of Elasticsearch and OpenSearch, which indexes a string as C(text) with a
        C(keyword) sub-field; C(term) filters must use the C(keyword) form to match whole values exactly.
      - Set it to an empty string when an index template maps C(app), C(phase), C(run_id) and C(host) as C(keyword).
    type: str
    default: .keyword
notes:
  - Events are returned as they were written (the document's C(_source)); fields and values depend on what
    M(immune.canary.deploy_event) was given.
seealso:
  - module: immune.canary.deploy_event
extends_documentation_fragment:
  - immune.canary.attributes
  - immune.canary.attributes.CHECK_MODE_READ_ONLY
  - immune.canary.elasticsearch
"""

EXAMPLES = r"""
- name: Read the event of the last rollout start of the app
  immune.canary.deploy_event_info:
    es_hosts: ["https://es.example.com:9200"]
    es_api_key: "{{ vault_es_api_key }}"
    app: app.example.com
    phase: started
  register: last_start
  delegate_to: localhost
  run_once: true

- name: Take the fallback versions that rollout recorded
  ansible.builtin.set_fact:
    rollback_fallbacks: "{{ (last_start.events | first).data.fallbacks if last_start.events else {} }}"

- name: Show the last ten steps of one run on one server
  immune.canary.deploy_event_info:
    es_hosts: ["https://es.example.com:9200"]
    app: app.example.com
    run_id: "{{ rollout_run_id }}"
    host: "{{ inventory_hostname }}"
    limit: 10
  delegate_to: localhost
"""

RETURN = r"""
changed:
  description: Always false; the module only reads.
  returned: always
  type: bool
  sample: false
events:
  description:
    - The matching event documents as written (C(_source)), newest first, at most O(limit).
    - Empty when nothing matches.
  returned: always
  type: list
  elements: dict
  sample:
    - "@timestamp": "2026-05-01T12:00:00.000Z"
      app: app.example.com
      version: "3457"
      phase: started
      run_id: run-42
      event_id: run-42-started
      data:
        fallbacks:
          web-01: "3456"
          web-02: "3456"
elapsed:
  description: Seconds the module ran.
  returned: always
  type: float
  sample: 0.04
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch, fail_from_error  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._deploy_event import (  # noqa: E402
    DEFAULT_READ_INDEX,
    PHASES,
    EventReader,
    build_event_query,
)
from ansible_collections.immune.canary.plugins.module_utils._elasticsearch import (  # noqa: E402
    ELASTICSEARCH_IMPORT_ERROR,
    HAS_ELASTICSEARCH,
    EsClient,
    es_argument_spec,
    es_module_kwargs,
)


def argument_spec():
    return es_argument_spec(
        index=dict(type='str', default=DEFAULT_READ_INDEX),
        app=dict(type='str', required=True),
        phase=dict(type='str', choices=list(PHASES)),
        run_id=dict(type='str'),
        host=dict(type='str'),
        limit=dict(type='int', default=1),
        keyword_suffix=dict(type='str', default='.keyword', no_log=False),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **es_module_kwargs())
    if not HAS_ELASTICSEARCH:
        module.fail_json(msg=missing_required_lib('elasticsearch'), exception=str(ELASTICSEARCH_IMPORT_ERROR))
    watch = Stopwatch()
    client = None
    try:
        index, body = build_event_query(module.params)
        client = EsClient(module.params)
        for warning in client.warnings:
            module.warn(warning)
        events = EventReader(client).read(index, body)
    except CanaryError as exc:
        fail_from_error(module, exc, changed=False, elapsed=watch.elapsed())
    finally:
        if client is not None:
            client.close()
    module.exit_json(changed=False, events=events, elapsed=watch.elapsed())


if __name__ == '__main__':
    main()
