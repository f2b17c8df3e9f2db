# Copyright: immune.canary maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a rollback will do on each host, decided before it touches any (plugin_utils/_rollback_plan.py)."""

from __future__ import annotations

DOCUMENTATION = r'''
name: rollback_plan
short_description: Decide, before any change, what a rollback does on each host
version_added: 0.2.0
description:
  - Takes what every host reported (O(_input)) and the site each host must end on (O(wanted)) and returns, per host,
    one action. V(unchanged) - it runs the site already, registered and healthy. V(swap) - the site is on the host.
    V(deploy) - the site is gone but the release's package is known (O(package), or the C(started) event of the
    deploy that rolled that release out), so it is deployed as a deploy does. V(refuse) - neither; the rollback
    must be refused before it touches any host.
  - For a refused host the reason names the deploy that pruned the site when the deploy events say so (O(started),
    O(touched)), and the message says how to proceed.
  - Each decision also names C(restore), the site to put back in service if a later step fails on that host (the
    running site, unless it is one of O(bad_sites)).
positional: _input
options:
  _input:
    description:
      - Host name to what the host reported - C(sites) (the application's site names), C(active) (the running one),
        C(targets) (C(name), C(target_state) per target group) and C(error) (why it could not be read, or empty).
    type: dict
    required: true
  app:
    description: The application (its sites are C(<app>-<version>)).
    type: str
    required: true
  wanted:
    description: Host name to the site it must end on.
    type: dict
    required: true
  started:
    description: The C(started) deploy events of the application (M(immune.canary.deploy_event_info)).
    type: list
    elements: dict
    default: []
  touched:
    description: Run id to the hosts that run deployed (those with a C(promoted) or C(reverted) event).
    type: dict
    default: {}
  package:
    description: The release's package given for this run (C(url), C(checksum)); empty to use the recorded ones.
    type: dict
    default: {}
  bad_sites:
    description: Sites never put back in service when a step fails.
    type: list
    elements: str
    default: []
'''

EXAMPLES = r'''
- name: Decide what the rollback does on each host
  ansible.builtin.set_fact:
    plan: "{{ seen | immune.canary.rollback_plan(app='app.example.com', wanted={'web1': 'app.example.com-1'}) }}"
'''

RETURN = r'''
_value:
  description:
    - C(hosts) (host name to C(action), C(site), C(running), C(restore), C(reason) and, to deploy, C(package)),
      C(refused) (one line per refused host) and C(message) (empty unless a host is refused).
  type: dict
'''

from ansible.errors import AnsibleFilterError  # noqa: E402

from ansible_collections.immune.canary.plugins.plugin_utils._rollback_plan import plan  # noqa: E402


def rollback_plan(seen, app, wanted, started=None, touched=None, package=None, bad_sites=None):
    if not isinstance(seen, dict) or not isinstance(wanted, dict):
        raise AnsibleFilterError('rollback_plan needs a dict of hosts and a dict wanted, got %s and %s'
                                 % (type(seen).__name__, type(wanted).__name__))
    return plan(app, seen, wanted, started=started or [], touched=touched or {}, package=package or None, bad_sites=bad_sites or ())


class FilterModule:
    """immune.canary filters."""

    def filters(self):
        return {'rollback_plan': rollback_plan}
