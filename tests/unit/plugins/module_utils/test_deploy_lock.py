"""The deploy lock against the Elasticsearch double, over real sockets: two acquirers, expiry, takeover race, release."""

from __future__ import annotations

import threading

import pytest

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._deploy_lock import DeployLock, describe_holder, make_holder, validate_lock_params
from ansible_collections.immune.canary.plugins.module_utils._elasticsearch import EsClient
from doubles.es_double import EsDouble

APP = 'app.example.com'


class Clock:
    def __init__(self, now=1_780_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture(params=['es8', 'opensearch2'])
def double(request):
    with EsDouble(request.param) as running:
        yield running


def holder(run_id, **extra):
    return dict(dict(run_id=run_id, user='deploy', controller='ctl-1', playbook='deploy.yml'), **extra)


def lock_for(double, clock):
    return DeployLock(EsClient({'es_hosts': [double.url]}), clock=clock)


def test_acquire_is_idempotent_and_a_second_run_is_refused_naming_the_holder(double):
    clock = Clock()
    first, second = lock_for(double, clock), lock_for(double, clock)
    predicted = first.acquire(APP, holder('run-1'), 600, check_mode=True)
    assert predicted['changed'] is True and predicted['result'] == 'acquired' and double.mutations == []
    got = first.acquire(APP, holder('run-1'), 600)
    assert got['changed'] is True and got['result'] == 'acquired' and got['previous'] is None
    stored = double.get_source('canary-locks', APP)
    assert stored == got['lock']
    assert stored['holder'] == holder('run-1')
    assert stored['acquired_at'] == '2026-05-28T20:26:40.000Z' and stored['expires_at'] == '2026-05-28T20:36:40.000Z'
    again = first.acquire(APP, holder('run-1'), 600)
    assert again['changed'] is False and again['result'] == 'held'
    clock.now += 100
    writes = len(double.mutations)
    with pytest.raises(CanaryError) as refused:
        second.acquire(APP, holder('run-2', user='other'), 600)
    assert str(refused.value) == (
        'Failed to acquire the deploy lock of app.example.com: held by run run-1 (user deploy, on ctl-1, playbook deploy.yml) since '
        '2026-05-28T20:26:40.000Z; it expires at 2026-05-28T20:36:40.000Z (in 500 s). Wait for that run to end, or take the lock '
        'over with force=true (playbooks/rollback.yml does)')
    with pytest.raises(CanaryError):
        second.acquire(APP, holder('run-2'), 600, check_mode=True)
    assert len(double.mutations) == writes
    assert double.get_source('canary-locks', APP)['holder']['run_id'] == 'run-1'


def test_refresh_extends_the_expiry_and_keeps_acquired_at(double):
    clock = Clock()
    lock = lock_for(double, clock)
    lock.acquire(APP, holder('run-1'), 60)
    clock.now += 50
    got = lock.acquire(APP, holder('run-1'), 60, refresh=True)
    assert got['changed'] is True and got['result'] == 'refreshed'
    stored = double.get_source('canary-locks', APP)
    assert stored['acquired_at'] == '2026-05-28T20:26:40.000Z' and stored['expires_at'] == '2026-05-28T20:28:30.000Z'


def test_an_expired_lock_is_taken_over_and_the_displaced_holder_named(double):
    clock = Clock()
    lock_for(double, clock).acquire(APP, holder('run-1'), 60)
    clock.now += 61
    got = lock_for(double, clock).acquire(APP, holder('run-2'), 60)
    assert got['result'] == 'taken_over' and got['changed'] is True
    assert got['displaced'] == holder('run-1') and got['displaced_expired'] is True
    assert double.get_source('canary-locks', APP)['holder']['run_id'] == 'run-2'


def test_force_takes_over_a_live_lock(double):
    clock = Clock()
    lock_for(double, clock).acquire(APP, holder('run-1'), 600)
    predicted = lock_for(double, clock).acquire(APP, holder('rollback-1', playbook='rollback.yml'), 600, force=True, check_mode=True)
    assert predicted['result'] == 'taken_over' and double.get_source('canary-locks', APP)['holder']['run_id'] == 'run-1'
    got = lock_for(double, clock).acquire(APP, holder('rollback-1', playbook='rollback.yml'), 600, force=True)
    assert got['result'] == 'taken_over' and got['displaced'] == holder('run-1') and got['displaced_expired'] is False
    assert double.get_source('canary-locks', APP)['holder']['playbook'] == 'rollback.yml'


class RacingClient(EsClient):
    """Reads, then lets every racer read before anyone writes: the worst interleaving."""

    barrier = None

    def get_document(self, index, doc_id, what='document'):
        found = super().get_document(index, doc_id, what)
        barrier, self.barrier = self.barrier, None
        if barrier is not None:
            barrier.wait(10)
        return found


@pytest.mark.parametrize('expired', [True, False])
def test_two_runs_taking_over_at_once_exactly_one_wins(double, expired):
    clock = Clock()
    lock_for(double, clock).acquire(APP, holder('run-old'), 60)
    clock.now += 61 if expired else 1
    barrier = threading.Barrier(2)
    results = {}

    def race(run_id):
        client = RacingClient({'es_hosts': [double.url]})
        client.barrier = barrier
        try:
            results[run_id] = DeployLock(client, clock=clock).acquire(APP, holder(run_id), 60, force=not expired)
        except CanaryError as exc:
            results[run_id] = exc

    threads = [threading.Thread(target=race, args=(name,)) for name in ('run-a', 'run-b')]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [name for name, got in results.items() if isinstance(got, dict)]
    losers = [got for got in results.values() if isinstance(got, CanaryError)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert double.get_source('canary-locks', APP)['holder']['run_id'] == winners[0]
    assert str(losers[0]).startswith('Failed to take over the deploy lock of app.example.com: another run took it at the same moment; '
                                     'it is now held by run %s' % winners[0])


def test_two_first_acquirers_at_once_exactly_one_wins(double):
    barrier = threading.Barrier(2)
    results = {}

    def race(run_id):
        client = RacingClient({'es_hosts': [double.url]})
        client.barrier = barrier
        try:
            results[run_id] = DeployLock(client, clock=Clock()).acquire(APP, holder(run_id), 60)
        except CanaryError as exc:
            results[run_id] = exc

    threads = [threading.Thread(target=race, args=(name,)) for name in ('run-a', 'run-b')]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    winners = [name for name, got in results.items() if isinstance(got, dict)]
    assert len(winners) == 1, results
    loser = next(got for got in results.values() if isinstance(got, CanaryError))
    assert 'held by run %s' % winners[0] in str(loser)


def test_release_only_by_the_holder_unless_forced(double):
    clock = Clock()
    lock_for(double, clock).acquire(APP, holder('run-1'), 600)
    writes = len(double.mutations)
    with pytest.raises(CanaryError) as refused:
        lock_for(double, clock).release(APP, 'run-2')
    assert str(refused.value) == (
        'Failed to release the deploy lock of app.example.com: it is held by run run-1 (user deploy, on ctl-1, playbook deploy.yml), '
        'not by this run (run-2); it expires at 2026-05-28T20:36:40.000Z (in 600 s). Only the holder releases it (or force=true)')
    assert len(double.mutations) == writes
    predicted = lock_for(double, clock).release(APP, 'run-1', check_mode=True)
    assert predicted == dict(changed=True, result='released', lock=None, previous=double.get_source('canary-locks', APP), displaced=None)
    assert len(double.mutations) == writes
    released = lock_for(double, clock).release(APP, 'run-1')
    assert released['changed'] is True and released['result'] == 'released'
    assert double.get_source('canary-locks', APP) is None
    gone = lock_for(double, clock).release(APP, 'run-1')
    assert gone == dict(changed=False, result='absent', lock=None, previous=None, displaced=None)
    lock_for(double, clock).acquire(APP, holder('run-3'), 600)
    forced = lock_for(double, clock).release(APP, 'run-4', force=True)
    assert forced['result'] == 'released' and forced['displaced'] == holder('run-3')
    # and a released lock can be acquired again at once
    assert lock_for(double, clock).acquire(APP, holder('run-5'), 600)['result'] == 'acquired'


def test_release_of_a_lock_that_changed_hands_meanwhile_is_refused(double):
    clock = Clock()
    lock_for(double, clock).acquire(APP, holder('run-1'), 600)

    class Sneaky(EsClient):
        def delete_document(self, index, doc_id, if_seq_no=None, if_primary_term=None, what='document'):
            DeployLock(EsClient({'es_hosts': [double.url]}), clock=clock).acquire(APP, holder('rollback'), 600, force=True)
            return super().delete_document(index, doc_id, if_seq_no, if_primary_term, what)

    with pytest.raises(CanaryError) as refused:
        DeployLock(Sneaky({'es_hosts': [double.url]}), clock=clock).release(APP, 'run-1')
    assert 'it changed hands while this run released it; it is now held by run rollback' in str(refused.value)
    assert double.get_source('canary-locks', APP)['holder']['run_id'] == 'rollback'


@pytest.mark.parametrize('params, message', [
    (dict(app='', run_id='r', ttl=60), "Invalid app '': expected the non-empty application name"),
    (dict(app=None, run_id='r', ttl=60), 'Invalid app None'),
    (dict(app='a\nb', run_id='r', ttl=60), 'without control characters'),
    (dict(app='x' * 513, run_id='r', ttl=60), 'at most 512 bytes'),
    (dict(app='a', run_id=' ', ttl=60), "Invalid run_id ' '"),
    (dict(app='a', run_id='r', ttl=0), 'Invalid ttl 0: expected whole seconds from 1 to 604800'),
    (dict(app='a', run_id='r', ttl=-5), 'Invalid ttl -5'),
    (dict(app='a', run_id='r', ttl=604801), 'Invalid ttl 604801'),
    (dict(app='a', run_id='r', ttl=60, index='Locks'), "Invalid index 'Locks'"),
    (dict(app='a', run_id='r', ttl=60, index='locks*'), "Invalid index 'locks*'"),
    (dict(app='a', run_id='r', ttl=60, holder={'host': 'x'}), 'Invalid holder: unknown key(s) host; valid keys are user, controller, playbook'),
    (dict(app='a', run_id='r', ttl=60, holder=['x']), "Invalid holder ['x']"),
])
def test_bad_parameters_are_refused(params, message):
    with pytest.raises(CanaryError) as refused:
        validate_lock_params(dict(params, state='present'))
    assert message in str(refused.value)


def test_ttl_is_not_checked_on_release_and_holder_defaults():
    assert validate_lock_params(dict(app='a', run_id='r', ttl=0, state='absent')) == 'canary-locks'
    made = make_holder(dict(run_id='r', holder={'playbook': 'deploy.yml', 'user': ''}))
    assert made['run_id'] == 'r' and made['playbook'] == 'deploy.yml' and made['user'] and made['controller']
    assert describe_holder({'holder': {'run_id': 'r'}}) == 'run r'
    assert describe_holder(None) == 'run ?'
