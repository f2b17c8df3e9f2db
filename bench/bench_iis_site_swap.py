"""Time one iis_site_swap call against the WS-Management double.

Service layer (query + apply over real pywinrm on loopback) and the module
through ansible-playbook. The figure that matters on real hosts is
PowerShell start-up (two powershell.exe per changing call); this shows the
collection's own overhead.
"""

from __future__ import annotations

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
from doubles.winrm_double import WinRMDouble, client_params  # noqa: E402
from support.ansible_runner import run_module  # noqa: E402

APP = 'app.example.com'
A, B = APP + '-1', APP + '-2'
PUBLIC = dict(port=443, host_header=APP, sni=True)


def main(rounds=20):
    with WinRMDouble() as double:
        host = double.add_host('web1')
        host.add_site(A, [PUBLIC])
        host.add_site(B, [PUBLIC], state='Stopped')
        running = double.listen('web1')
        swap = _iis.SiteSwap(_winrm.WinRMClient(client_params(double, running)), 'web1')
        swaps, noops = [], []
        for i in range(rounds):
            target = B if i % 2 == 0 else A
            start = time.perf_counter()
            swap.run(dict(app=APP, active=target))
            swaps.append(time.perf_counter() - start)
            start = time.perf_counter()
            swap.run(dict(app=APP, active=target))
            noops.append(time.perf_counter() - start)
        print('service layer, swap (query + apply): median %.1f ms, max %.1f ms over %d' % (
            statistics.median(swaps) * 1000, max(swaps) * 1000, rounds))
        print('service layer, no change (query only): median %.1f ms, max %.1f ms over %d' % (
            statistics.median(noops) * 1000, max(noops) * 1000, rounds))
        conn = dict(winrm_host=running.host, winrm_port=running.port, winrm_scheme='http', winrm_transport='basic',
                    winrm_user=double.user, winrm_password=double.password)
        start = time.perf_counter()
        result = run_module('iis_site_swap', dict(conn, app=APP, active=B if rounds % 2 == 0 else A))
        wall = time.perf_counter() - start
        print('ansible-playbook run (process start included): %.2f s wall; module elapsed %.3f s; changed=%s' % (
            wall, result.result['elapsed'], result.result['changed']))


if __name__ == '__main__':
    main()
