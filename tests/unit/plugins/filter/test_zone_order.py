from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.immune.canary.plugins.filter.zone_order import FilterModule, zone_order


@pytest.mark.parametrize('hosts, zones, ordered', [
    # The zone of the first host goes first; within a zone the inventory's order stays.
    (['w1', 'w2', 'w3', 'w4', 'w5'], {'w1': 'b', 'w2': 'a', 'w3': 'b', 'w4': 'c', 'w5': 'a'}, ['w1', 'w3', 'w2', 'w5', 'w4']),
    # Hosts of no known zone come last, in their order.
    (['w1', 'w2', 'w3', 'w4'], {'w1': None, 'w2': 'a', 'w3': '', 'w4': 'a'}, ['w2', 'w4', 'w1', 'w3']),
    (['w1', 'w2'], {}, ['w1', 'w2']),
    (['w2', 'w1'], {'w1': 'a', 'w2': 'a'}, ['w2', 'w1']),
    ([], {'w1': 'a'}, []),
])
def test_hosts_go_zone_by_zone(hosts, zones, ordered):
    assert zone_order(hosts, zones) == ordered
    assert FilterModule().filters()['zone_order'](hosts, zones) == ordered


def test_the_same_hosts_come_out():
    hosts = ['w%d' % i for i in range(50)]
    zones = {h: 'z%d' % (i % 3) for i, h in enumerate(hosts)}
    ordered = zone_order(hosts, zones)
    assert sorted(ordered) == sorted(hosts)
    # Every zone is one run of hosts.
    runs = [zones[h] for i, h in enumerate(ordered) if i == 0 or zones[ordered[i - 1]] != zones[h]]
    assert runs == ['z0', 'z1', 'z2']


@pytest.mark.parametrize('hosts, zones', [('w1', {}), (['w1'], ['a'])])
def test_bad_input_is_refused(hosts, zones):
    with pytest.raises(AnsibleFilterError, match='zone_order expects a list of hosts and a dict from host to zone'):
        zone_order(hosts, zones)
