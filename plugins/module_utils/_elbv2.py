# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""ELBv2 target registration: remote calls, planning, capacity guard, waiting.

This layer knows nothing about Ansible. Remote calls are one function each
and raise CanaryError worded "Failed to <action> <object>: <cause>"; the
planner, the capacity guard, the default timeout and the messages are pure
functions so they can be tested on tables of cases.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import tempfile
import time

from ansible_collections.immune.canary.plugins.module_utils._aws import describe_aws_error, error_code
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch
from ansible_collections.immune.canary.plugins.module_utils._waiter import WaitTimeout, wait_for

try:
    from botocore.exceptions import BotoCoreError, ClientError
    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:  # pragma: no cover - the module reports the missing library
    class BotoCoreError(Exception):
        pass

    class ClientError(Exception):
        pass

    AWS_ERRORS = (BotoCoreError, ClientError)

try:
    import fcntl
except ImportError:  # pragma: no cover - Ansible controllers are POSIX
    fcntl = None

# Polling: start at 1 s and back off by a quarter each poll to 5 s. A wait
# ends at most 5 s after the state changed (a 30 s drain: 11 calls, at most
# 5 s late) while one waiting host makes at most one call a second, far
# below the ELBv2 API's rate limits. (Backing off to 15 s made every drain
# and admission up to 15 s longer than AWS needed.)
DEFAULT_POLL_INTERVAL = 1.0
MAX_POLL_INTERVAL = 5.0
BACKOFF_FACTOR = 1.25
# Added to the time AWS itself needs (drain delay, health checks to pass).
TIMEOUT_MARGIN = 30.0

# Target states in which the target is still (or again) registered.
DRAINING_STATES = frozenset(('draining', 'unhealthy.draining'))
NOT_REGISTERED_REASON = 'Target.NotRegistered'
NOT_IN_USE_REASON = 'Target.NotInUse'
# Synthesised when a target is absent from DescribeTargetHealth's full list.
NOT_REGISTERED = {'state': 'unused', 'reason': NOT_REGISTERED_REASON, 'description': 'Target is not registered to the target group'}

# Deregistrations on one machine take turns per target group, so that the
# capacity guard of each sees the others' deregistrations: under the free
# strategy or when plays run side by side, Ansible's throttle does not
# serialise hosts. Held for one observation and one call, well under a
# second; a wait this long means something is stuck.
CAPACITY_LOCK_TIMEOUT = 60.0
CAPACITY_LOCK_POLL = 0.05
CAPACITY_LOCK_PREFIX = 'immune-canary-capacity-'

_PERCENT = re.compile(r'^\s*(\d+(?:\.\d+)?)\s*%\s*$')
_COUNT = re.compile(r'^\s*(\d+)\s*$')


# --------------------------------------------------------------------------
# Pure logic
# --------------------------------------------------------------------------

def parse_min_healthy(value):
    """Parse ``min_healthy``: a count ``N`` or a percentage ``"NN%"``.

    Returns ``('count', int)`` or ``('percent', float)``; raises CanaryError
    naming the option, the value and what is valid.
    """
    valid = "a whole number >= 0 (e.g. 1) or a percentage between 0% and 100% (e.g. '50%')"
    if isinstance(value, bool):
        raise CanaryError('Invalid value for option min_healthy: %r; expected %s' % (value, valid))
    if isinstance(value, int):
        if value < 0:
            raise CanaryError('Invalid value for option min_healthy: %r; expected %s' % (value, valid))
        return ('count', value)
    text = str(value)
    match = _COUNT.match(text)
    if match:
        return ('count', int(match.group(1)))
    match = _PERCENT.match(text)
    if match:
        percent = float(match.group(1))
        if percent > 100:
            raise CanaryError('Invalid value for option min_healthy: %r; a percentage must lie between 0%% and 100%%' % text)
        return ('percent', percent)
    raise CanaryError('Invalid value for option min_healthy: %r; expected %s' % (text, valid))


def required_healthy(min_healthy, other_targets):
    """How many healthy targets other than ours a group must keep.

    A count is used as given. A percentage is taken of ``other_targets`` (the
    group's registered targets other than this one, whatever their health),
    rounded up, and is at least 1 when above 0% so that a percentage can never
    allow a group to be emptied. ``0`` and ``"0%"`` disable the guard.
    """
    kind, amount = min_healthy
    if kind == 'count':
        return amount
    if amount <= 0:
        return 0
    return max(1, int(math.ceil(amount * other_targets / 100.0 - 1e-9)))


def is_registered(health):
    """A target counts as registered unless it is draining or not registered at all."""
    return health['state'] not in DRAINING_STATES and health.get('reason') != NOT_REGISTERED_REASON


def is_draining(health):
    return health['state'] in DRAINING_STATES


def plan_action(desired, health):
    """The call one group needs: ``'register'``, ``'deregister'`` or None.

    ``present`` re-registers a draining target (a fast revert must act);
    ``absent`` leaves a draining target alone (it is already on its way out).
    """
    if desired == 'present':
        return None if is_registered(health) else 'register'
    return 'deregister' if is_registered(health) else None


def plan(desired, groups):
    """Map group ARN -> action for every group (see plan_action)."""
    return {group['arn']: plan_action(desired, group['health']) for group in groups}


def capacity_violations(min_healthy, groups, actions):
    """Groups that a deregistration would leave below ``min_healthy``.

    Only groups planned for ``deregister`` are checked, and not groups that
    no load balancer uses (they serve nothing, and never report a healthy
    target, so there is no capacity to keep). Each group dict
    carries ``other_healthy`` (healthy targets other than ours) and
    ``other_targets`` (registered targets other than ours). Returns a list of
    ``(group, healthy, required)``.
    """
    found = []
    for group in groups:
        if actions.get(group['arn']) != 'deregister' or group.get('load_balancer_arns') == []:
            continue
        required = required_healthy(min_healthy, group['other_targets'])
        if group['other_healthy'] < required:
            found.append((group, group['other_healthy'], required))
    return found


def default_wait_timeout(desired, groups, margin=TIMEOUT_MARGIN):
    """Seconds to wait when the user gave no ``wait_timeout``.

    ``absent``: the longest deregistration delay, plus a margin.
    ``present``: the longest time to pass health checks (interval x healthy
    threshold + one check timeout), plus a margin.
    """
    if desired == 'absent':
        need = max((g['deregistration_delay'] for g in groups), default=0)
    else:
        need = max((g['health_check_interval'] * g['healthy_threshold'] + g['health_check_timeout'] for g in groups), default=0)
    return float(need) + margin


def format_health(group):
    health = group['health']
    text = '%s: %s' % (group['name'], health['state'])
    if health.get('reason') or health.get('description'):
        text += ' (%s: %s)' % (health.get('reason') or '-', health.get('description') or '-')
    return text


def timeout_message(target_id, desired, groups, elapsed):
    """The timeout message: per group the last state, reason and description."""
    goal = 'become healthy' if desired == 'present' else 'finish draining'
    return 'Failed to wait for target %s to %s in %d target group(s): timed out after %.1f s; last observed: %s' % (
        target_id, goal, len(groups), elapsed, '; '.join(format_health(g) for g in groups))


def settled(desired, health):
    """Whether the target has reached the desired end state in one group."""
    if desired == 'present':
        return health['state'] == 'healthy'
    return not is_registered(health) and not is_draining(health)


def no_load_balancer(group):
    return not group['load_balancer_arns'] or group['health'].get('reason') == NOT_IN_USE_REASON


def no_load_balancer_message(target_id, groups):
    names = ', '.join(g['name'] for g in groups)
    return ('Failed to wait for target %s to become healthy in %s: the target group is not used by any load balancer, '
            'so its targets never become healthy (attach it to a listener, or set wait: false)' % (target_id, names))


def registration(group):
    """Diff view of one group: registered or not, and the state."""
    return {'registered': is_registered(group['health']), 'target_state': group['health']['state']}


def group_result(group):
    """The documented per-group result."""
    health = group['health']
    return {
        'arn': group['arn'],
        'name': group['name'],
        'port': group['target_port'],
        'deregistration_delay': group['deregistration_delay'],
        'slow_start': group['slow_start'],
        'target_state': health['state'],
        'reason': health.get('reason'),
        'description': health.get('description'),
        'healthy_count': group['healthy_count'],
        'target_count': group['target_count'],
        'targets': list(group.get('registered_ids', [])),
    }


# --------------------------------------------------------------------------
# Remote calls: one function each
# --------------------------------------------------------------------------

def _is_arn(ref):
    return ref.startswith('arn:')


def _describe_groups_call(client, key, values):
    groups = []
    paginator = client.get_paginator('describe_target_groups')
    for page in paginator.paginate(**{key: values}):
        groups.extend(page.get('TargetGroups', []))
    return groups


def describe_target_groups(client, refs):
    """Describe target groups by ARN or name (both may be mixed).

    AWS takes ARNs and names in separate calls. Returns the groups in the
    order of ``refs``. AWS only says "one or more target groups not found",
    so the refs of a failing call are then tried alone to name the missing.
    """
    found = []
    for key, batch in (('TargetGroupArns', [r for r in refs if _is_arn(r)]), ('Names', [r for r in refs if not _is_arn(r)])):
        if not batch:
            continue
        try:
            found.extend(_describe_groups_call(client, key, batch))
        except ClientError as exc:
            if error_code(exc) != 'TargetGroupNotFound':
                raise describe_aws_error('describe target groups %s' % ', '.join(batch), exc) from exc
            missing = _missing_groups(client, key, batch)
            raise CanaryError('Failed to find target group(s) %s: not found in this account and region' % ', '.join(missing),
                              missing_target_groups=missing) from exc
        except BotoCoreError as exc:
            raise describe_aws_error('describe target groups %s' % ', '.join(batch), exc) from exc
    by_ref = {}
    for group in found:
        by_ref[group['TargetGroupArn']] = group
        by_ref[group['TargetGroupName']] = group
    return [by_ref[r] for r in refs]


def _missing_groups(client, key, refs):
    missing = []
    for ref in refs:
        try:
            client.describe_target_groups(**{key: [ref]})
        except ClientError as exc:
            if error_code(exc) != 'TargetGroupNotFound':
                raise describe_aws_error('describe target group %s' % ref, exc) from exc
            missing.append(ref)
        except BotoCoreError as exc:
            raise describe_aws_error('describe target group %s' % ref, exc) from exc
    return missing or list(refs)


def describe_target_group_attributes(client, arn, name=None):
    """``(deregistration_delay, slow_start)`` in seconds for one group."""
    try:
        response = client.describe_target_group_attributes(TargetGroupArn=arn)
    except AWS_ERRORS as exc:
        raise describe_aws_error('describe attributes of target group %s' % (name or arn), exc) from exc
    attrs = {a['Key']: a.get('Value') for a in response.get('Attributes', [])}
    return (int(attrs.get('deregistration_delay.timeout_seconds') or 300), int(attrs.get('slow_start.duration_seconds') or 0))


def describe_target_health(client, arn, name=None, target_id=None, port=None):
    """Target health descriptions of a group: all its targets, or one target."""
    kwargs = {'TargetGroupArn': arn}
    if target_id is not None:
        target = {'Id': target_id}
        if port is not None:
            target['Port'] = int(port)
        kwargs['Targets'] = [target]
    try:
        response = client.describe_target_health(**kwargs)
    except AWS_ERRORS as exc:
        what = 'target %s in' % target_id if target_id else 'targets of'
        raise describe_aws_error('describe health of %s target group %s' % (what, name or arn), exc) from exc
    return response.get('TargetHealthDescriptions', [])


def register_target(client, arn, target_id, port, name=None, vpc_id=None):
    """RegisterTargets for one target."""
    try:
        client.register_targets(TargetGroupArn=arn, Targets=[{'Id': target_id, 'Port': int(port)}])
    except AWS_ERRORS as exc:
        error = describe_aws_error('register target %s in target group %s' % (target_id, name or arn), exc)
        if error_code(exc) == 'InvalidTarget':
            error = CanaryError('%s (the target must exist, be running, and be in the target group\'s VPC %s)'
                                % (error.message, vpc_id or '-'), **error.details)
        raise error from exc


def deregister_target(client, arn, target_id, port, name=None):
    """DeregisterTargets for one target. Returns False when it was not registered.

    Real AWS accepts deregistering a target that is not registered; moto (and
    some edge cases) answer InvalidTarget. Both mean "nothing to do".
    """
    try:
        client.deregister_targets(TargetGroupArn=arn, Targets=[{'Id': target_id, 'Port': int(port)}])
    except ClientError as exc:
        if error_code(exc) == 'InvalidTarget':
            return False
        raise describe_aws_error('deregister target %s from target group %s' % (target_id, name or arn), exc) from exc
    except BotoCoreError as exc:
        raise describe_aws_error('deregister target %s from target group %s' % (target_id, name or arn), exc) from exc
    return True


# --------------------------------------------------------------------------
# Observation and the whole operation
# --------------------------------------------------------------------------

def _health_of(description):
    health = description.get('TargetHealth', {})
    return {'state': health.get('State', 'unavailable'), 'reason': health.get('Reason'), 'description': health.get('Description')}


def summarise_health(descriptions, target_id, port):
    """Split a group's full health list into our target and the counts.

    Returns ``(health, healthy_count, target_count, other_healthy, other_targets)``;
    counts cover registered targets (not draining), ours included.
    """
    ours = dict(NOT_REGISTERED)
    healthy = total = other_healthy = other_total = 0
    for desc in descriptions:
        target = desc.get('Target', {})
        health = _health_of(desc)
        mine = target.get('Id') == target_id and int(target.get('Port') or port) == int(port)
        if mine:
            ours = health
        if not is_registered(health):
            continue
        total += 1
        if health['state'] == 'healthy':
            healthy += 1
        if not mine:
            other_total += 1
            if health['state'] == 'healthy':
                other_healthy += 1
    return ours, healthy, total, other_healthy, other_total


def load_groups(client, refs, target_port=None):
    """Describe the groups and their attributes (once per run)."""
    groups = []
    seen = set()
    for raw in describe_target_groups(client, refs):
        arn, name = raw['TargetGroupArn'], raw['TargetGroupName']
        if arn in seen:  # the same group given by name and by ARN
            continue
        seen.add(arn)
        delay, slow_start = describe_target_group_attributes(client, arn, name)
        groups.append({
            'arn': arn,
            'name': name,
            'vpc_id': raw.get('VpcId'),
            'target_type': raw.get('TargetType', 'instance'),
            'target_port': int(target_port if target_port is not None else raw.get('Port') or 80),
            'load_balancer_arns': list(raw.get('LoadBalancerArns') or []),
            'health_check_interval': int(raw.get('HealthCheckIntervalSeconds') or 30),
            'health_check_timeout': int(raw.get('HealthCheckTimeoutSeconds') or 5),
            'healthy_threshold': int(raw.get('HealthyThresholdCount') or 5),
            'deregistration_delay': delay,
            'slow_start': slow_start,
        })
    return groups


def healthy_others(descriptions, target_id, port):
    """The ids of the group's healthy targets other than ours."""
    found = []
    for desc in descriptions:
        target = desc.get('Target', {})
        mine = target.get('Id') == target_id and int(target.get('Port') or port) == int(port)
        if not mine and _health_of(desc)['state'] == 'healthy':
            found.append(target.get('Id'))
    return found


def observe(client, group, target_id):
    """Refresh one group's view of the target (one DescribeTargetHealth call)."""
    descriptions = describe_target_health(client, group['arn'], group['name'])
    health, healthy, total, other_healthy, other_total = summarise_health(descriptions, target_id, group['target_port'])
    group.update(health=health, healthy_count=healthy, target_count=total, other_healthy=other_healthy, other_targets=other_total,
                 other_healthy_ids=healthy_others(descriptions, target_id, group['target_port']),
                 registered_ids=sorted({d.get('Target', {}).get('Id') for d in descriptions if is_registered(_health_of(d))} - {None}))
    return group


def zone_violations(min_per_zone, groups, actions, target_id, zones):
    """Groups that a deregistration would leave with fewer than ``min_per_zone`` healthy targets in our zone.

    ``zones`` maps target ids to their Availability Zone. Like
    capacity_violations, only groups planned for ``deregister`` and used by a
    load balancer are checked. Returns a list of ``(group, zone, healthy, required)``.
    """
    found = []
    if min_per_zone <= 0:
        return found
    zone = zones.get(target_id)
    for group in groups:
        if actions.get(group['arn']) != 'deregister' or group.get('load_balancer_arns') == []:
            continue
        healthy = sum(1 for other in group.get('other_healthy_ids', []) if zones.get(other) == zone)
        if healthy < min_per_zone:
            found.append((group, zone, healthy, min_per_zone))
    return found


def capacity_lock_path(arn, directory=None):
    """The lock file of one target group: a hash of its ARN in the temp directory."""
    digest = hashlib.sha256(arn.encode('utf-8')).hexdigest()[:32]
    return os.path.join(directory or tempfile.gettempdir(), '%s%s.lock' % (CAPACITY_LOCK_PREFIX, digest))


def _open_lock_file(path):
    flags = os.O_CREAT | os.O_RDWR | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0)
    try:
        return os.open(path, flags, 0o666)
    except PermissionError:
        # Created by another user of this machine: a shared lock file can be
        # locked through a read-only descriptor.
        return os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0))


@contextlib.contextmanager
def capacity_lock(arns, timeout=CAPACITY_LOCK_TIMEOUT, directory=None, sleep=time.sleep, clock=time.monotonic):
    """Hold an exclusive lock per target group (sorted, so never a deadlock).

    A no-op where ``fcntl`` does not exist. Raises CanaryError naming the
    lock file when it cannot be taken within ``timeout`` seconds.
    """
    if fcntl is None:
        yield
        return
    held = []
    try:
        for arn in sorted(set(arns)):
            path = capacity_lock_path(arn, directory)
            try:
                fd = _open_lock_file(path)
            except OSError as exc:
                raise CanaryError('Failed to lock target group %s for the capacity guard: cannot open %s: %s'
                                  % (arn, path, exc.strerror or exc)) from exc
            held.append(fd)
            deadline = clock() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if clock() >= deadline:
                        raise CanaryError('Failed to lock target group %s for the capacity guard: another deregistration '
                                          'on this machine held %s for more than %g s' % (arn, path, timeout)) from None
                    sleep(CAPACITY_LOCK_POLL)
        yield
    finally:
        for fd in reversed(held):
            os.close(fd)  # closing the descriptor releases its lock


class TargetRegistration:
    """Register or deregister one target in several groups and wait.

    ``sleep`` and ``clock`` are injectable for tests; ``check_mode`` skips
    every mutating call and the wait. ``stopwatch`` lets the caller count
    time spent before (creating the client) in ``elapsed``.
    """

    def __init__(self, client, target_id, target_groups, state='present', target_port=None, wait=True,
                 wait_timeout=None, poll_interval=DEFAULT_POLL_INTERVAL, max_interval=MAX_POLL_INTERVAL,
                 min_healthy=('count', 1), check_mode=False, sleep=time.sleep, clock=time.monotonic, stopwatch=None,
                 min_healthy_per_az=0, zone_lookup=None):
        self.client = client
        self.target_id = target_id
        self.refs = list(target_groups)
        self.state = state
        self.target_port = target_port
        self.wait = wait
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.max_interval = max(max_interval, poll_interval)
        self.min_healthy = min_healthy
        # The guard per Availability Zone: zone_lookup(ids) -> {id: zone}.
        self.min_healthy_per_az = min_healthy_per_az
        self.zone_lookup = zone_lookup
        self.check_mode = check_mode
        self.sleep = sleep
        self.clock = clock
        self.stopwatch = stopwatch or Stopwatch(clock)
        self.groups = []
        self.changed = False
        self._after = None
        self._actions = {}
        self._fresh = set()

    def result(self, before=None):
        result = {
            'changed': self.changed,
            'target_id': self.target_id,
            'state': self.state,
            'elapsed': self.stopwatch.elapsed(),
            'target_groups': [group_result(g) for g in self.groups],
        }
        if before is not None:
            result['diff'] = {'before': before, 'after': self._after}
        return result

    def failure(self, error):
        """Attach the documented keys to a CanaryError raised mid-run."""
        details = self.result()
        details.update(error.details)
        return CanaryError(error.message, **details)

    def run(self):
        try:
            return self._run()
        except CanaryError as error:
            raise self.failure(error) from error

    def _run(self):
        self.groups = load_groups(self.client, self.refs, self.target_port)
        if self.state == 'absent' and not self.check_mode:
            # Observe, decide and deregister under the lock: the guard then
            # counts every deregistration made before it on this machine.
            with capacity_lock(g['arn'] for g in self.groups):
                before = self._decide()
                self._change()
        else:
            before = self._decide()
            if self.state == 'query':  # read only
                return self.result()
            if self.check_mode:
                return self.result(before)
            self._change()

        if self.wait:
            self._wait()
        elif self.changed:
            for group in self.groups:
                observe(self.client, group, self.target_id)
        self._after = {g['name']: registration(g) for g in self.groups}
        return self.result(before)

    def _decide(self):
        """Observe, plan and guard; returns the registrations before."""
        for group in self.groups:
            observe(self.client, group, self.target_id)
        if self.state == 'query':
            return None
        self._actions = plan(self.state, self.groups)
        before = {g['name']: registration(g) for g in self.groups}

        if self.state == 'absent':
            violations = capacity_violations(self.min_healthy, self.groups, self._actions)
            if violations:
                raise CanaryError(self._capacity_message(violations))
            self._guard_zones()
        elif self.wait:
            # Also in check mode: it predicts the real run's failure.
            blind = [g for g in self.groups if no_load_balancer(g)]
            if blind:
                raise CanaryError(no_load_balancer_message(self.target_id, blind))

        self.changed = any(self._actions.values())
        self._after = {g['name']: self._predicted(g, self._actions[g['arn']]) for g in self.groups}
        return before

    def _change(self):
        actions = self._actions
        for group in self.groups:
            action = actions[group['arn']]
            if action == 'register':
                register_target(self.client, group['arn'], self.target_id, group['target_port'], group['name'], group['vpc_id'])
            elif action == 'deregister':
                if not deregister_target(self.client, group['arn'], self.target_id, group['target_port'], group['name']):
                    actions[group['arn']] = None
        self.changed = any(actions.values())
        self._fresh = {arn for arn, action in actions.items() if action is None}

    def _predicted(self, group, action):
        if action == 'register':
            return {'registered': True, 'target_state': 'initial'}
        if action == 'deregister':
            return {'registered': False, 'target_state': 'draining'}
        return registration(group)

    def _guard_zones(self):
        """The guard per zone: our zone must keep min_healthy_per_az healthy targets in every group we leave."""
        leaving = [g for g in self.groups if self._actions.get(g['arn']) == 'deregister']
        if self.min_healthy_per_az <= 0 or not leaving:
            return
        ids = {self.target_id}
        for group in leaving:
            ids.update(group.get('other_healthy_ids', []))
        zones = self.zone_lookup(sorted(ids))
        if not zones.get(self.target_id):
            raise CanaryError('Failed to deregister target %s: min_healthy_per_az=%d needs its Availability Zone, and EC2 does not '
                              'know the instance; nothing was deregistered' % (self.target_id, self.min_healthy_per_az))
        violations = zone_violations(self.min_healthy_per_az, self.groups, self._actions, self.target_id, zones)
        if violations:
            parts = ['%s has %d healthy other target(s) in %s, needs %d' % (g['name'], healthy, zone, required)
                     for g, zone, healthy, required in violations]
            raise CanaryError('Failed to deregister target %s: min_healthy_per_az=%d would be violated, nothing was deregistered; %s'
                              % (self.target_id, self.min_healthy_per_az, '; '.join(parts)))

    def _capacity_message(self, violations):
        kind, amount = self.min_healthy
        wanted = '%d' % amount if kind == 'count' else '%g%%' % amount
        parts = ['%s has %d healthy other target(s) of %d, needs %d' % (g['name'], healthy, g['other_targets'], required)
                 for g, healthy, required in violations]
        return ('Failed to deregister target %s: min_healthy=%s would be violated, nothing was deregistered; %s'
                % (self.target_id, wanted, '; '.join(parts)))

    def _check(self):
        for group in self.groups:
            if group['arn'] in self._fresh:
                # Observed just before, and not touched since: no second call.
                self._fresh.discard(group['arn'])
            elif not settled(self.state, group['health']):
                observe(self.client, group, self.target_id)
        if self.state == 'present':
            blind = [g for g in self.groups if g['health'].get('reason') == NOT_IN_USE_REASON]
            if blind:
                raise CanaryError(no_load_balancer_message(self.target_id, blind))
        return all(settled(self.state, g['health']) for g in self.groups), self.groups

    def _wait(self):
        timeout = self.wait_timeout or default_wait_timeout(self.state, self.groups)
        # The first poll is immediate for groups just changed; the others
        # use the observation made before.
        try:
            wait_for(self._check, timeout, 'target %s' % self.target_id, initial_interval=self.poll_interval,
                     max_interval=self.max_interval, factor=BACKOFF_FACTOR, sleep=self.sleep, clock=self.clock)
        except WaitTimeout as exc:
            raise CanaryError(timeout_message(self.target_id, self.state, self.groups, exc.elapsed), wait_timeout=timeout) from exc
