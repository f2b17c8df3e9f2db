"""plugin_utils._rollback_plan: what a rollback does on each host, decided before it touches any."""

from __future__ import annotations

import pytest

from ansible_collections.immune.canary.plugins.plugin_utils._rollback_plan import plan, pruned_by, recordable_package, recorded_package

APP = 'app.example.com'
S = APP + '-%s'
HEALTHY = ({'name': 'app-https', 'target_state': 'healthy'},)
UNUSED = ({'name': 'app-https', 'target_state': 'unused'},)


def host(active, sites, targets=HEALTHY, error=''):
    return dict(active=active, sites=list(sites), targets=list(targets), error=error)


def started(version, at, fallbacks, package=None, run=None):
    data = dict(hosts=sorted(fallbacks), fallbacks=fallbacks)
    if package:
        data['package'] = package
    return {'@timestamp': at, 'version': str(version), 'run_id': run or 'run-%s' % version, 'phase': 'started', 'data': data}


# The history: 2 promoted everywhere (fallback 1), then 3 caught on web1/web2 (serial 2) and reverted to 2.
HISTORY = [
    started(2, '2026-12-01T10:00:00Z', {h: S % 1 for h in ('web1', 'web2', 'web3', 'web4')},
            package={'url': 'https://artifacts.example.com/app-2.zip', 'checksum': 'sha256:' + '2' * 64}),
    started(3, '2026-12-02T10:00:00Z', {h: S % 2 for h in ('web1', 'web2', 'web3', 'web4')}),
]
TOUCHED = {'run-2': ['web1', 'web2', 'web3', 'web4'], 'run-3': ['web1', 'web2']}
FLEET = {'web1': host(S % 2, [S % 2]), 'web2': host(S % 2, [S % 2]),
         'web3': host(S % 2, [S % 1, S % 2]), 'web4': host(S % 2, [S % 1, S % 2])}


def test_a_pruned_version_without_its_package_is_refused_naming_hosts_reason_and_way_out():
    result = plan(APP, FLEET, {h: S % 1 for h in FLEET}, started=HISTORY, touched=TOUCHED)
    assert {h: d['action'] for h, d in result['hosts'].items()} == {'web1': 'refuse', 'web2': 'refuse', 'web3': 'swap', 'web4': 'swap'}
    assert result['refused'] == ['web1: app.example.com-1 is pruned by the deploy of release 3 (run run-3), and its package is not known',
                                 'web2: app.example.com-1 is pruned by the deploy of release 3 (run run-3), and its package is not known']
    assert result['message'].startswith('Refused before any change: the rollback cannot reach its version on 2 host(s). web1: ')
    assert "give the release's package (-e rollout_package_url=<url> -e rollout_package_checksum=sha256:<hex>)" in result['message']
    assert 'or roll back to a version every host still has (app.example.com-2)' in result['message']


def test_a_pruned_version_with_its_package_given_is_deployed_where_it_is_gone():
    package = {'url': 'https://artifacts.example.com/app-1.zip', 'checksum': 'sha256:' + '1' * 64}
    result = plan(APP, FLEET, {h: S % 1 for h in FLEET}, started=HISTORY, touched=TOUCHED, package=package)
    assert result['refused'] == [] and result['message'] == ''
    assert {h: d['action'] for h, d in result['hosts'].items()} == {'web1': 'deploy', 'web2': 'deploy', 'web3': 'swap', 'web4': 'swap'}
    assert result['hosts']['web1']['package'] == package and result['hosts']['web1']['restore'] == S % 2


def test_the_package_recorded_by_the_deploy_of_that_release_is_used():
    fleet = {'web1': host(S % 3, [S % 3])}
    result = plan(APP, fleet, {'web1': S % 2}, started=HISTORY, touched=TOUCHED)
    assert result['hosts']['web1']['action'] == 'deploy'
    assert result['hosts']['web1']['package'] == {'url': 'https://artifacts.example.com/app-2.zip', 'checksum': 'sha256:' + '2' * 64}
    assert 'recorded by run run-2' in result['hosts']['web1']['reason']


@pytest.mark.parametrize('seen, action, reason', [
    (host(S % 1, [S % 1]), 'unchanged', 'already runs app.example.com-1, registered and healthy'),
    (host(S % 1, [S % 1], targets=UNUSED), 'swap', 'app.example.com-1 is on the host'),
    (host(S % 1, [S % 1], targets=()), 'swap', 'app.example.com-1 is on the host'),
    (host('', [S % 1, S % 2]), 'swap', 'app.example.com-1 is on the host'),
    (host('', [], error='WinRM unreachable'), 'refuse', 'it cannot be read: WinRM unreachable'),
    (host(S % 2, [S % 2]), 'refuse', 'app.example.com-1 is not on the host (no recorded deploy says when it went), and its package is not known'),
], ids=['already-there', 'there-but-deregistered', 'there-no-targets', 'nothing-running', 'unreadable', 'gone-no-history'])
def test_one_host(seen, action, reason):
    decision = plan(APP, {'web1': seen}, {'web1': S % 1})['hosts']['web1']
    assert (decision['action'], decision['reason']) == (action, reason)


def test_no_recorded_fallback_is_refused_and_asks_for_the_version():
    result = plan(APP, {'web1': host(S % 2, [S % 2])}, {})
    assert result['hosts']['web1']['reason'].startswith('no version to roll back to')
    assert 'To proceed, name the version with -e rollback_to=<version> (playbooks/status.yml lists the sites)' in result['message']


@pytest.mark.parametrize('running, bad, restore', [(S % 2, [], S % 2), (S % 3, [S % 3], ''), ('', [], '')],
                         ids=['healthy-running-site', 'bad-release-running', 'nothing-running'])
def test_restore_names_the_running_site_unless_it_is_a_bad_release(running, bad, restore):
    decision = plan(APP, {'web1': host(running, [S % 1, running] if running else [S % 1])}, {'web1': S % 1}, bad_sites=bad)['hosts']['web1']
    assert decision['restore'] == restore


def test_pruned_by_only_counts_runs_that_touched_the_host():
    # Release 3 reached web1 only: web3 still has 1, and for web1 run 3 is the pruning one.
    assert pruned_by(APP, S % 1, 'web1', HISTORY, TOUCHED) == ('3', 'run-3')
    assert pruned_by(APP, S % 1, 'web3', HISTORY, TOUCHED) is None
    assert pruned_by(APP, S % 9, 'web1', HISTORY, TOUCHED) is None


@pytest.mark.parametrize('url, checksum, recorded', [
    ('https://artifacts.example.com/app.zip', 'sha256:aa', {'url': 'https://artifacts.example.com/app.zip', 'checksum': 'sha256:aa'}),
    ('https://artifacts.example.com/app.zip?sig=S3cret', 'sha256:aa', {'checksum': 'sha256:aa'}),
    ('https://user:pw@artifacts.example.com/app.zip', 'sha256:aa', {'checksum': 'sha256:aa'}),
    ('', 'sha256:aa', {'checksum': 'sha256:aa'}),
    ('https://artifacts.example.com/app.zip', '', None),
], ids=['plain', 'signed-url', 'user-info', 'no-url', 'no-checksum'])
def test_a_package_url_with_a_credential_is_never_recorded(url, checksum, recorded):
    assert recordable_package(url, checksum) == recorded


def test_a_recorded_package_without_its_url_cannot_be_deployed():
    history = [started(5, '2026-12-03T10:00:00Z', {'web1': S % 4}, package={'checksum': 'sha256:' + '5' * 64})]
    assert recorded_package(APP, S % 5, history) is None
