# Copyright: immune.canary maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The order in which a rollout takes its hosts: zone by zone."""

from __future__ import annotations

DOCUMENTATION = r'''
name: zone_order
short_description: Order hosts zone by zone, keeping their order within each zone
version_added: 0.2.0
description:
  - Returns the hosts of O(_input) ordered by Availability Zone, so that a rolling deploy finishes one zone before it
    starts the next and its first batch lies in one zone when the zone has hosts enough.
  - Zones come in the order in which their first host appears in O(_input), so the zone of the first host goes first;
    within a zone the hosts keep their order. Hosts whose zone is unknown (missing, empty or null in O(zones)) come
    last, in their order.
positional: _input, zones
options:
  _input:
    description: Host names, in the order the inventory gives them.
    type: list
    elements: str
    required: true
  zones:
    description: Host name to its Availability Zone.
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: Take the hosts zone by zone
  ansible.builtin.debug:
    msg: "{{ ['web1', 'web2', 'web3'] | immune.canary.zone_order({'web1': 'eu-west-1b', 'web2': 'eu-west-1a', 'web3': 'eu-west-1b'}) }}"
  # ['web1', 'web3', 'web2']
'''

RETURN = r'''
_value:
  description: The same hosts, zone by zone.
  type: list
  elements: str
'''

from ansible.errors import AnsibleFilterError  # noqa: E402


def zone_order(hosts, zones):
    if not isinstance(hosts, (list, tuple)) or not isinstance(zones, dict):
        raise AnsibleFilterError('zone_order expects a list of hosts and a dict from host to zone, got %s and %s'
                                 % (type(hosts).__name__, type(zones).__name__))
    first_seen = {}
    for host in hosts:
        zone = zones.get(host) or ''
        if zone:
            first_seen.setdefault(zone, len(first_seen))
    unknown = len(first_seen)
    keyed = [(first_seen.get(zones.get(host) or '', unknown), index, host) for index, host in enumerate(hosts)]
    return [host for _zone, _index, host in sorted(keyed)]


class FilterModule:
    def filters(self):
        return {'zone_order': zone_order}
