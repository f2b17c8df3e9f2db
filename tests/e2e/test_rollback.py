"""An emergency rollback never makes things worse, end to end on a 4-host lab.

The scenarios run in order on one lab, as an operator would meet them: 2 is
promoted everywhere (1 stays as the fallback), 3 is caught on web1 and web2
(serial 2) and reverted to 2, which pruned 1 there. Then the operator asks
for 1.
"""

from __future__ import annotations

import pytest

from support.e2e import Scenario, applied_scripts, assert_fleet_converged, outcomes, running, running_lab

SITE = 'app.example.com-%s'


@pytest.fixture(scope='module')
def lab4(tmp_path_factory):
    with running_lab(tmp_path_factory.mktemp('lab-rollback'), 4, '127.0.53', region='ap-south-1') as lab:
        yield lab


@pytest.fixture(scope='module')
def history(lab4, tmp_path_factory):
    """2 promoted everywhere, then 3 caught on the first batch of two and reverted."""
    scenario = Scenario(lab4, tmp_path_factory.mktemp('history'))
    good = scenario.play('deploy.yml', scenario.release(2))
    assert good.rc == 0, good.stdout[-3000:]
    bad = scenario.play('deploy.yml', dict(scenario.release(3, error_rate=0.3), rollout_serial=2))
    assert bad.rc != 0 and bad.report['result'] == 'aborted', bad.stdout[-3000:]
    # The batch bakes together: a host whose gate has not failed yet when the other's did is reverted
    # by the reconcile play instead (a 6 s bake gives each host some 20 requests).
    result = outcomes(bad)
    assert result['web3'] == result['web4'] == 'untouched', result
    assert {result['web1'], result['web2']} <= {'reverted', 'reconciled'} and 'reverted' in (result['web1'], result['web2']), result
    sites = {h: sorted(s['name'] for s in hs['sites']) for h, hs in lab4.state()['hosts'].items()}
    assert SITE % 1 not in sites['web1'] + sites['web2'] and SITE % 1 in sites['web3'], sites
    assert_fleet_converged(lab4, SITE % 2)
    return scenario


def test_a_rollback_to_a_pruned_version_without_its_package_is_refused_before_any_change(lab4, history):
    before = {h: applied_scripts(lab4, h) for h in lab4.hosts}
    run = history.play('rollback.yml', {'rollback_to': '1'})
    assert run.rc != 0
    text = ' '.join(run.stdout.split())
    for host in ('web1', 'web2'):
        assert '%s: app.example.com-1 is pruned by the deploy of release 3' % host in text, run.stdout[-4000:]
    assert 'Refused before any change: the rollback cannot reach its version on 2 host(s).' in text
    assert "give the release's package (-e rollout_package_url=<url> -e rollout_package_checksum=sha256:<hex>)" in text
    assert 'or roll back to a version every host still has (app.example.com-2)' in text
    # Nothing touched: no IIS change anywhere, every host still registered and healthy on 2, the lock released.
    assert {h: applied_scripts(lab4, h) for h in lab4.hosts} == before
    assert_fleet_converged(lab4, SITE % 2)
    assert lab4.es.get_source('canary-locks', 'app.example.com') is None


def test_the_same_rollback_with_the_package_deploys_it_where_it_is_gone(lab4, history):
    package = lab4.build('1')
    run = history.play('rollback.yml', {'rollback_to': '1', 'rollout_package_url': package['url'],
                                        'rollout_package_checksum': package['checksum']})
    assert run.rc == 0, run.stdout[-4000:]
    assert run.report['result'] == 'rolled_back'
    assert {h: d['action'] for h, d in run.report['plan'].items()} == {'web1': 'deploy', 'web2': 'deploy', 'web3': 'swap', 'web4': 'swap'}
    assert outcomes(run) == {h: 'rolled_back' for h in lab4.hosts}
    # Customers never saw a failure while two hosts were rebuilt from the package and two swapped.
    assert run.customers['failures'] == 0, run.customers
    assert_fleet_converged(lab4, SITE % 1)
    # The site the deployed hosts ran is kept: rolling forward again is instant.
    assert all(SITE % 2 in [s['name'] for s in lab4.state()['hosts'][h]['sites']] for h in ('web1', 'web2'))


def test_a_failed_swap_puts_the_host_back_on_the_site_it_served(lab4, history):
    lab4.fault('swap-fail', host='web2')
    try:
        run = history.play('rollback.yml', {'rollback_to': '2'})
    finally:
        lab4.fault('swap-fail', host='web2', off=True)
    assert run.rc != 0
    assert run.report['result'] == 'failed'
    web2 = run.report['hosts']['web2']
    assert web2['outcome'] == 'rolled_back_failed' and web2['failed_step'] == 'Stop the new site and start the fallback site', web2
    assert web2['restored']['site'] == SITE % 1 and '0x80070020' in web2['reason']
    assert {h: o for h, o in outcomes(run).items() if h != 'web2'} == {'web1': 'rolled_back', 'web3': 'rolled_back', 'web4': 'rolled_back'}
    assert 'could not put every host back on its version: web2: ' in ' '.join(run.stdout.split())
    # web2 serves 1 again, registered and healthy: capacity given back, and the report says where it stands.
    state = lab4.state()['hosts']
    assert running(lab4)['web2'] == [SITE % 1] and set(state['web2']['target_state'].values()) == {'healthy'}
    # Once the cause is gone, the same rollback finishes the job.
    again = history.play('rollback.yml', {'rollback_to': '2'})
    assert again.rc == 0, again.stdout[-3000:]
    assert outcomes(again) == {'web1': 'unchanged', 'web2': 'rolled_back', 'web3': 'unchanged', 'web4': 'unchanged'}
    assert_fleet_converged(lab4, SITE % 2)


def test_status_reads_without_changing_anything(lab4, history):
    before = {h: applied_scripts(lab4, h) for h in lab4.hosts}
    run = history.play('status.yml', rps=0)
    assert run.rc == 0, run.stdout[-3000:]
    assert [r for r in run.records if r['result'].get('changed')] == []
    assert all(' changed=0 ' in line for line in run.stdout.splitlines() if line.startswith('web'))
    assert {h: applied_scripts(lab4, h) for h in lab4.hosts} == before
