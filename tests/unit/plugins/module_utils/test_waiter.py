from __future__ import annotations

import pytest

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError
from ansible_collections.immune.canary.plugins.module_utils._waiter import WaitTimeout, poll_intervals, wait_for


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize('initial, maximum, factor, expected', [
    (1, 10, 2, [1, 2, 4, 8, 10, 10]),
    (2, 2, 3, [2, 2, 2, 2, 2, 2]),
    (0.5, 3, 1.5, [0.5, 0.75, 1.125, 1.6875, 2.53125, 3]),
])
def test_poll_intervals_back_off_to_the_maximum(initial, maximum, factor, expected):
    gen = poll_intervals(initial, maximum, factor)
    assert [next(gen) for _value in expected] == pytest.approx(expected)


def test_wait_for_returns_observed_state_and_elapsed():
    clock = FakeClock()
    states = iter(['initial', 'initial', 'healthy'])

    def check():
        state = next(states)
        return state == 'healthy', state

    observed, elapsed = wait_for(check, 60, 'healthy', initial_interval=2, factor=2, sleep=clock.sleep, clock=clock)
    assert observed == 'healthy'
    assert clock.sleeps == [2, 4]
    assert elapsed == pytest.approx(6)


def test_wait_for_timeout_carries_last_state_and_never_oversleeps():
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as info:
        wait_for(lambda: (False, {'state': 'draining'}), 10, 'target to drain', initial_interval=4, factor=2,
                 sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [4, 6]
    assert info.value.last == {'state': 'draining'}
    assert info.value.elapsed == pytest.approx(10)
    assert str(info.value) == "Timed out after 10.0 s waiting for target to drain; last observed: {'state': 'draining'}"


def test_wait_for_stops_at_once_when_check_raises():
    clock = FakeClock()

    def check():
        raise CanaryError('never')

    with pytest.raises(CanaryError, match='never'):
        wait_for(check, 10, 'x', sleep=clock.sleep, clock=clock)
    assert clock.sleeps == []
