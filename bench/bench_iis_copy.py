"""What copying the running site costs the controller: iis_site_swap's service
layer over real pywinrm against the WS-Management double, on a host whose
running site looks like production's (tests/doubles/iis_sim.add_production_site).

Prints the size of the query's result (inventory and configuration trees),
the time to create a copy of the running site (query + apply, sim writes
included) against a site made from the options alone, and the time of a run
that finds nothing to change. On real hosts PowerShell start-up and IIS's own
configuration writes dominate; this shows the collection's own overhead.
"""

from __future__ import annotations

import base64
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / 'tools'), str(ROOT / 'tests')]

import build_collection  # noqa: E402

build_collection.sync()
sys.path.insert(0, str(ROOT / '.build'))

from ansible_collections.immune.canary.plugins.module_utils import _iis, _winrm  # noqa: E402
from doubles.iis_sim import add_production_site  # noqa: E402
from doubles.winrm_double import WinRMDouble, client_params  # noqa: E402

APP = 'app.example.com'
OLD, NEW = APP + '-1', APP + '-2'
PUBLIC = dict(port=443, host_header=APP, sni=True)


def measure(copy_enabled, rounds):
    made, noops, sizes = [], [], []
    for _round in range(rounds):
        with WinRMDouble() as double:
            host = double.add_host('web1')
            add_production_site(host, OLD, 'D:\\sites\\' + OLD, [PUBLIC], identity='SpecificUser', user_name='CORP\\svc-app',
                                password='bench-Pa55')
            running = double.listen('web1')
            swap = _iis.SiteSwap(_winrm.WinRMClient(client_params(double, running)), 'web1')
            params = dict(app=APP, active=NEW, site=dict(physical_path='D:\\sites\\' + NEW, bindings=[PUBLIC]), copy=dict(enabled=copy_enabled))
            start = time.perf_counter()
            swap.run(params)
            made.append(time.perf_counter() - start)
            start = time.perf_counter()
            again = swap.run(params)
            noops.append(time.perf_counter() - start)
            assert again['changed'] is False
            result = host.run_site_swap({'operation': 'query', 'app': APP, 'sites': [], 'checks': []})
            sizes.append(len(base64.b64encode(json.dumps(result).encode())))
    return made, noops, sizes


def main(rounds=15):
    for label, enabled in (('copy of the running site', True), ('from the options alone', False)):
        made, noops, sizes = measure(enabled, rounds)
        print('%s: create (query + apply) median %.1f ms, max %.1f ms; no change (query) median %.1f ms; query result %d bytes '
              '(base64), over %d' % (label, statistics.median(made) * 1000, max(made) * 1000, statistics.median(noops) * 1000,
                                     max(sizes), rounds))


if __name__ == '__main__':
    main()
