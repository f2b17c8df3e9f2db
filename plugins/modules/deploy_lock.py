#!/usr/bin/python
# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: deploy_lock
short_description: One rollout of an application at a time, with a lock document in Elasticsearch
version_added: 0.1.0
description:
  - Keeps two rollouts of one application from running at once. The lock is one document in Elasticsearch (the store
    the rollout already uses), id O(app), holding who holds it (run id, user, controller host, playbook), C(acquired_at)
    and C(expires_at).
  - O(state=present) acquires the lock. It is created atomically (C(_create)); if another run holds it and it has not
    expired, the module fails and names the holder and when the lock expires. An expired lock is taken over with a write
    conditional on the document's C(_seq_no) and C(_primary_term), so of two runs taking it over at once exactly one wins.
  - O(force=true) takes over a live lock (a rollback must be able to run while a rollout is stuck); the result names
    the holder it displaced.
  - When this run (O(run_id)) holds the lock already, nothing changes, unless O(refresh=true), which extends the expiry
    to now + O(ttl).
  - O(state=absent) releases the lock, only if this run holds it, unless O(force=true).
  - Expiry is judged with the controller's clock; controllers' clocks must agree within a small part of O(ttl).
  - In check mode the lock is read and the outcome predicted (including the failure when another run holds it);
    nothing is written.
author:
  - immune.canary contributors (@immune-canary)
attributes:
  action_group:
    membership:
      - immune.canary.elasticsearch
options:
  app:
    description: The application whose rollouts the lock serializes; the lock document's id.
    type: str
    required: true
  state:
    description: V(present) to acquire (or refresh) the lock, V(absent) to release it.
    type: str
    choices: [present, absent]
    default: present
  run_id:
    description: Identifier of this run; the holder of the lock is recognised by it.
    type: str
    required: true
  holder:
    description:
      - More about the holder, shown to a run that finds the lock taken.
      - Keys C(user) (default the controller's user), C(controller) (default the controller's host name) and
        C(playbook) (default empty).
    type: dict
  ttl:
    description:
      - Seconds the lock lives from now when it is acquired, taken over or refreshed (1 to 604800).
      - Size it to the longest the run may take; a run that dies leaves the lock until it expires (or is taken over).
    type: int
    default: 3600
  force:
    description:
      - With O(state=present), take over the lock even when another run holds it and it has not expired.
      - With O(state=absent), release the lock even when another run holds it.
    type: bool
    default: false
  refresh:
    description: With O(state=present), when this run holds the lock already, extend its expiry to now + O(ttl).
    type: bool
    default: false
  index:
    description: The index of the lock documents.
    type: str
    default: canary-locks
extends_documentation_fragment:
  - immune.canary.attributes
  - immune.canary.attributes.CHECK_MODE_FULL
  - immune.canary.attributes.DIFF_MODE_FULL
  - immune.canary.elasticsearch
"""

EXAMPLES = r"""
- name: Take the lock of the application for this rollout
  immune.canary.deploy_lock:
    es_hosts: ["https://es.example.com:9200"]
    es_api_key: "{{ vault_es_api_key }}"
    app: app.example.com
    run_id: "{{ rollout_run_id }}"
    holder:
      playbook: deploy.yml
    ttl: 3600
  delegate_to: localhost
  run_once: true

- name: Take the lock over from a stuck rollout
  immune.canary.deploy_lock:
    es_hosts: ["https://es.example.com:9200"]
    app: app.example.com
    run_id: "{{ rollback_run_id }}"
    force: true
  delegate_to: localhost
  run_once: true
  register: lock

- name: Release it at the end
  immune.canary.deploy_lock:
    es_hosts: ["https://es.example.com:9200"]
    app: app.example.com
    run_id: "{{ rollout_run_id }}"
    state: absent
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
changed:
  description: Whether the lock was (or in check mode would be) created, taken over, refreshed or released.
  returned: always
  type: bool
result:
  description:
    - C(acquired) (created), C(taken_over) (an expired lock, or a live one with O(force)), C(held) (this run held it
      already), C(refreshed), C(released), or C(absent) (there was no lock to release).
  returned: always
  type: str
  sample: acquired
lock:
  description: The lock document after the module ran (null when released or absent).
  returned: always
  type: dict
  sample: {"app": "app.example.com", "holder": {"run_id": "run-42", "user": "deploy", "controller": "ctl-1", "playbook": "deploy.yml"},
           "acquired_at": "2026-05-01T12:00:00.000Z", "expires_at": "2026-05-01T13:00:00.000Z", "ttl": 3600}
previous:
  description: The lock document before the module ran (null when there was none).
  returned: always
  type: dict
displaced:
  description: The holder of a lock that was taken over or released by force (null otherwise).
  returned: always
  type: dict
  sample: {"run_id": "run-41", "user": "deploy", "controller": "ctl-2", "playbook": "deploy.yml"}
index:
  description: The index of the lock document.
  returned: always
  type: str
  sample: canary-locks
elapsed:
  description: Seconds the module ran.
  returned: always
  type: float
  sample: 0.05
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch, fail_from_error  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._deploy_lock import (  # noqa: E402
    DEFAULT_INDEX,
    DeployLock,
    describe_holder,
    make_holder,
    validate_lock_params,
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
        app=dict(type='str', required=True),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        run_id=dict(type='str', required=True),
        holder=dict(type='dict'),
        ttl=dict(type='int', default=3600),
        force=dict(type='bool', default=False),
        refresh=dict(type='bool', default=False),
        index=dict(type='str', default=DEFAULT_INDEX),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **es_module_kwargs())
    if not HAS_ELASTICSEARCH:
        module.fail_json(msg=missing_required_lib('elasticsearch'), exception=str(ELASTICSEARCH_IMPORT_ERROR))
    params = module.params
    watch = Stopwatch()
    client = None
    index = params['index']
    try:
        index = validate_lock_params(params)
        client = EsClient(params)
        for warning in client.warnings:
            module.warn(warning)
        lock = DeployLock(client, index)
        if params['state'] == 'present':
            outcome = lock.acquire(params['app'], make_holder(params), params['ttl'], force=params['force'], refresh=params['refresh'],
                                   check_mode=module.check_mode)
        else:
            outcome = lock.release(params['app'], params['run_id'], force=params['force'], check_mode=module.check_mode)
    except CanaryError as exc:
        fail_from_error(module, exc, changed=False, index=index, elapsed=watch.elapsed())
    finally:
        if client is not None:
            client.close()
    if outcome.get('displaced'):
        module.warn('The deploy lock of %s was taken from %s%s' % (params['app'], describe_holder(outcome['previous']),
                                                                   ' (expired)' if outcome.get('displaced_expired') else ''))
    result = dict(changed=outcome['changed'], result=outcome['result'], lock=outcome['lock'], previous=outcome['previous'],
                  displaced=outcome['displaced'], index=index, elapsed=watch.elapsed())
    if module._diff:
        result['diff'] = dict(before=outcome['previous'] or {}, after=outcome['lock'] or {})
    module.exit_json(**result)


if __name__ == '__main__':
    main()
