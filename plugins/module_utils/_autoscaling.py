# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""EC2 Auto Scaling: the groups of a fleet, their suspended processes, standby.

This layer knows nothing about Ansible. Remote calls are one function each
and raise CanaryError worded "Failed to <action> <object>: <cause>"; the
validation, the plans (what to suspend, what to resume, whether standby is
safe) and the problem list are pure functions tested on tables of cases.
"""

from __future__ import annotations

import re

from ansible_collections.immune.canary.plugins.module_utils._aws import describe_aws_error
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch
from ansible_collections.immune.canary.plugins.module_utils._elbv2 import AWS_ERRORS

# The processes SuspendProcesses and ResumeProcesses know, in AWS's order.
PROCESSES = ('Launch', 'Terminate', 'AddToLoadBalancer', 'AlarmNotification', 'AZRebalance', 'HealthCheck',
             'InstanceRefresh', 'ReplaceUnhealthy', 'ScheduledActions')

# What a rollout suspends: every process that would replace, rebalance or
# resize the fleet under it, and none that would keep the group from working
# afterwards. See the autoscaling_group module's documentation for why.
ROLLOUT_PROCESSES = ('AZRebalance', 'AlarmNotification', 'HealthCheck', 'InstanceRefresh', 'ReplaceUnhealthy', 'ScheduledActions')

# Instance refresh statuses during which the refresh may still replace instances.
REFRESH_ACTIVE = frozenset(('Pending', 'InProgress', 'Cancelling', 'RollbackInProgress', 'Baking'))

STATES = ('query', 'suspended', 'resumed', 'standby', 'in_service')

# The record a run leaves on each group where it suspends processes, as two
# tags of the group, written before the processes are suspended and deleted
# after they are resumed: if the run dies in between, the next run that reads
# the group (rollback.yml, the next deploy) finds what to resume, and nothing
# an operator suspended is in it.
RECORD_PROCESSES_TAG = 'immune-canary:suspended-processes'
RECORD_BY_TAG = 'immune-canary:suspended-by'
# Characters AWS allows in a tag value (and the length it allows).
RECORD_PATTERN = re.compile(r'^[\w .:/=+@-]{1,256}$')
# processes=recorded with state=resumed: what the groups' records name.
RECORDED = 'recorded'

# API limits: DescribeAutoScalingInstances takes 50 ids, DescribeAutoScalingGroups 100 names.
INSTANCE_BATCH = 50
GROUP_BATCH = 100


# --------------------------------------------------------------------------
# Validation (pure, before any call)
# --------------------------------------------------------------------------

def _names(option, values):
    """Stripped, de-duplicated non-empty strings, or CanaryError naming the option."""
    if values is None:
        return []
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise CanaryError('Invalid value for option %s: %r; expected a list of names' % (option, values))
    found = []
    for value in values:
        text = value.strip() if isinstance(value, str) else ''
        if not text:
            raise CanaryError('Invalid value for option %s: %r; every entry must be a non-empty name' % (option, values))
        if text not in found:
            found.append(text)
    return found


def validate_processes(option, values):
    """Process names as AWS spells them; unknown ones refused naming the option and the valid names."""
    names = _names(option, values)
    unknown = [name for name in names if name not in PROCESSES]
    if unknown:
        raise CanaryError('Invalid value for option %s: unknown process(es) %s; valid processes are %s'
                          % (option, ', '.join(repr(n) for n in unknown), ', '.join(PROCESSES)))
    return names


def validate_record(record):
    """The run id a suspension is recorded under: a valid tag value, or CanaryError naming the option."""
    if record is None:
        return None
    if not isinstance(record, str) or not RECORD_PATTERN.match(record):
        raise CanaryError('Invalid value for option record: %r; expected 1 to 256 letters, digits, spaces or _ . : / = + - @ '
                          '(it becomes the value of the tag %s)' % (record, RECORD_BY_TAG))
    return record


def validate(state, instance_ids=None, groups=None, processes=None, record=None):
    """Check the options for ``state``. Returns ``(instance_ids, groups, processes)`` normalized.

    ``processes`` is a list for ``suspended`` (the rollout list when None);
    for ``resumed`` a dict group -> list, or a list that applies to every
    group of ``groups``; it becomes a dict group -> list; or ``recorded``,
    which it stays (what each group's record names).
    """
    if state not in STATES:
        raise CanaryError('Invalid value for option state: %r; expected one of %s' % (state, ', '.join(STATES)))
    ids = _names('instance_ids', instance_ids)
    names = _names('groups', groups)
    if record is not None and state != 'suspended':
        raise CanaryError('Invalid options: record is only used with state=suspended (state=resumed with processes=%s '
                          'reads it back)' % RECORDED)
    validate_record(record)
    if state == 'query':
        if not ids and not names:
            raise CanaryError('Invalid options: state=query needs instance_ids or groups')
        return ids, names, None
    if state in ('standby', 'in_service'):
        if len(ids) != 1 or names:
            raise CanaryError('Invalid value for option instance_ids: %r; state=%s takes exactly one instance id (and no groups)'
                              % (instance_ids, state))
        return ids, [], None
    if state == 'suspended':
        if not ids and not names:
            raise CanaryError('Invalid options: state=suspended needs groups or instance_ids')
        if processes is None:
            return ids, names, list(ROLLOUT_PROCESSES)
        if isinstance(processes, dict):
            raise CanaryError('Invalid value for option processes: %r; state=suspended takes a list of processes' % (processes,))
        chosen = validate_processes('processes', processes)
        if not chosen:
            raise CanaryError('Invalid value for option processes: []; give at least one process, valid processes are %s'
                              % ', '.join(PROCESSES))
        return ids, names, chosen
    # resumed: exactly what the caller names, never "all".
    if processes == RECORDED:
        if not ids and not names:
            raise CanaryError('Invalid options: state=resumed with processes=%s needs groups or instance_ids' % RECORDED)
        return ids, names, RECORDED
    if ids:
        raise CanaryError('Invalid options: state=resumed takes groups and processes, not instance_ids')
    if isinstance(processes, dict):
        plan = {}
        for group, listed in processes.items():
            group_name = group.strip() if isinstance(group, str) else ''
            if not group_name:
                raise CanaryError('Invalid value for option processes: %r; every key must be an Auto Scaling group name' % (processes,))
            plan[group_name] = validate_processes('processes[%s]' % group_name, listed)
        extra = [name for name in names if name not in plan]
        if extra:
            raise CanaryError('Invalid options: groups %s are not keys of processes; give the processes to resume for each group'
                              % ', '.join(extra))
        if not plan:
            raise CanaryError('Invalid value for option processes: {}; state=resumed resumes only the processes it is given')
        return [], list(plan), plan
    if processes is None:
        raise CanaryError('Invalid options: state=resumed needs processes (a list with groups, or a dict group -> list '
                          'as state=suspended returns it in suspended_now); it never resumes every process')
    chosen = validate_processes('processes', processes)
    if not names:
        raise CanaryError('Invalid options: state=resumed with a list of processes needs groups')
    return [], names, {name: list(chosen) for name in names}


# --------------------------------------------------------------------------
# Pure logic
# --------------------------------------------------------------------------

def _iso(value):
    return value.isoformat() if hasattr(value, 'isoformat') else value


def instance_view(instance_id, raw):
    """One instance as documented; ``raw`` is its DescribeAutoScalingInstances entry or None."""
    if raw is None:
        return {'instance_id': instance_id, 'group': None, 'lifecycle_state': None, 'health_status': None, 'availability_zone': None}
    return {
        'instance_id': instance_id,
        'group': raw.get('AutoScalingGroupName'),
        'lifecycle_state': raw.get('LifecycleState'),
        'health_status': raw.get('HealthStatus'),
        'availability_zone': raw.get('AvailabilityZone'),
    }


def refresh_view(refreshes):
    """The newest instance refresh of a group (AWS lists the newest first), or None."""
    if not refreshes:
        return None
    newest = refreshes[0]
    return {
        'id': newest.get('InstanceRefreshId'),
        'status': newest.get('Status'),
        'status_reason': newest.get('StatusReason'),
        'percentage_complete': newest.get('PercentageComplete'),
        'start_time': _iso(newest.get('StartTime')),
    }


def record_view(tags):
    """The suspension a run recorded in a group's tags: ``{processes, by}``, or None.

    Only names AWS knows are kept: a tag edited by hand cannot make a run
    resume something else.
    """
    values = {tag.get('Key'): tag.get('Value') or '' for tag in tags or []}
    names = values.get(RECORD_PROCESSES_TAG, '').split()
    processes = [name for name in PROCESSES if name in names]
    if not processes:
        return None
    return {'processes': processes, 'by': values.get(RECORD_BY_TAG, '')}


def merge_record(record, processes, by):
    """The record after a run suspends ``processes``: what was recorded already stays in it."""
    recorded = set(record['processes']) if record else set()
    return {'processes': [name for name in PROCESSES if name in recorded or name in processes], 'by': by}


def shrink_record(record, resumed):
    """The record after ``resumed`` were resumed: None when nothing is left to resume."""
    if not record:
        return None
    left = [name for name in record['processes'] if name not in resumed]
    return dict(record, processes=left) if left else None


def group_view(raw, refreshes=None):
    """One group as documented, from DescribeAutoScalingGroups (and its refreshes, when read)."""
    instances = raw.get('Instances') or []
    in_service = sum(1 for i in instances if i.get('LifecycleState') == 'InService')
    refresh = refresh_view(refreshes)
    view = {
        'name': raw['AutoScalingGroupName'],
        'arn': raw.get('AutoScalingGroupARN'),
        'min_size': int(raw.get('MinSize') or 0),
        'max_size': int(raw.get('MaxSize') or 0),
        'desired_capacity': int(raw.get('DesiredCapacity') or 0),
        'in_service': in_service,
        'instance_count': len(instances),
        'availability_zones': list(raw.get('AvailabilityZones') or []),
        'target_group_arns': list(raw.get('TargetGroupARNs') or []),
        'suspended_processes': sorted(p['ProcessName'] for p in raw.get('SuspendedProcesses') or [] if p.get('ProcessName')),
        'record': record_view(raw.get('Tags')),
        'instance_refresh': refresh,
        'refresh_in_progress': bool(refresh and refresh['status'] in REFRESH_ACTIVE),
    }
    view['problems'] = group_problems(view)
    return view


def group_problems(view):
    """Why a rollout must not start on this group now; each message names the group."""
    problems = []
    refresh = view.get('instance_refresh')
    if view.get('refresh_in_progress'):
        problems.append('Auto Scaling group %s has an instance refresh %s (%s, %s%% complete); it replaces instances while it runs'
                        % (view['name'], refresh['status'], refresh['id'], refresh.get('percentage_complete') or 0))
    if view['in_service'] < view['desired_capacity']:
        problems.append('Auto Scaling group %s has %d InService instance(s), fewer than its desired capacity %d'
                        % (view['name'], view['in_service'], view['desired_capacity']))
    return problems


def plan_suspend(wanted, already):
    """``(suspend_now, suspended_before)``: the wanted processes not yet suspended, and those an operator (or AWS) had."""
    already = set(already)
    return [p for p in wanted if p not in already], [p for p in wanted if p in already]


def plan_resume(wanted, suspended):
    """``(resume_now, not_suspended)``: of the processes to resume, those suspended now, and those already running."""
    suspended = set(suspended)
    return [p for p in wanted if p in suspended], [p for p in wanted if p not in suspended]


def standby_refusal(instance_id, view):
    """Why taking one InService instance to Standby is unsafe for its group, or None.

    EnterStandby lowers the desired capacity by one (the group must not
    launch a replacement), so the group keeps ``in_service - 1`` instances
    serving: that must stay at least its MinSize and above zero.
    """
    left = view['in_service'] - 1
    floor = max(view['min_size'], 1)
    if left >= floor:
        return None
    why = 'no InService instance' if left <= 0 else '%d InService instance(s), below its MinSize %d' % (left, view['min_size'])
    figures = (view['in_service'], view['min_size'], view['desired_capacity'])
    return ('Failed to put instance %s in standby: Auto Scaling group %s would keep %s (InService %d, MinSize %d, '
            'desired capacity %d); nothing was changed' % ((instance_id, view['name'], why) + figures))


# --------------------------------------------------------------------------
# Remote calls: one function each
# --------------------------------------------------------------------------

def describe_auto_scaling_instances(client, instance_ids):
    """instance id -> DescribeAutoScalingInstances entry; ids in no group are absent."""
    return _describe_in_batches(client, 'describe_auto_scaling_instances', 'InstanceIds', instance_ids, INSTANCE_BATCH,
                                'AutoScalingInstances', 'InstanceId', 'the Auto Scaling instances')


def describe_auto_scaling_groups(client, names):
    """name -> DescribeAutoScalingGroups entry; names that do not exist are absent."""
    return _describe_in_batches(client, 'describe_auto_scaling_groups', 'AutoScalingGroupNames', names, GROUP_BATCH,
                                'AutoScalingGroups', 'AutoScalingGroupName', 'the Auto Scaling groups')


def _describe_in_batches(client, operation, parameter, keys, batch_size, items, key, what):
    """key -> entry of a paginated Describe call, asked ``batch_size`` keys at a time (AWS's limit per call)."""
    found = {}
    keys = list(dict.fromkeys(keys))
    for start in range(0, len(keys), batch_size):
        batch = keys[start:start + batch_size]
        try:
            for page in client.get_paginator(operation).paginate(**{parameter: batch}):
                for entry in page.get(items, []):
                    found[entry[key]] = entry
        except AWS_ERRORS as exc:
            raise describe_aws_error('describe %s %s' % (what, ', '.join(batch)), exc) from exc
    return found


def describe_instance_refreshes(client, name):
    """The newest instance refreshes of one group, newest first (one page is enough)."""
    try:
        return client.describe_instance_refreshes(AutoScalingGroupName=name, MaxRecords=5).get('InstanceRefreshes', [])
    except AWS_ERRORS as exc:
        raise describe_aws_error('describe the instance refreshes of Auto Scaling group %s' % name, exc) from exc


def suspend_processes(client, name, processes):
    try:
        client.suspend_processes(AutoScalingGroupName=name, ScalingProcesses=list(processes))
    except AWS_ERRORS as exc:
        raise describe_aws_error('suspend processes %s of Auto Scaling group %s' % (', '.join(processes), name), exc) from exc


def resume_processes(client, name, processes):
    try:
        client.resume_processes(AutoScalingGroupName=name, ScalingProcesses=list(processes))
    except AWS_ERRORS as exc:
        raise describe_aws_error('resume processes %s of Auto Scaling group %s' % (', '.join(processes), name), exc) from exc


def _record_tags(name, keys, record=None):
    tags = []
    for key in keys:
        tag = {'ResourceId': name, 'ResourceType': 'auto-scaling-group', 'Key': key}
        if record is not None:
            value = ' '.join(record['processes']) if key == RECORD_PROCESSES_TAG else record['by']
            tag.update(Value=value, PropagateAtLaunch=False)
        tags.append(tag)
    return tags


def write_record(client, name, record):
    """Tag the group with the processes a run suspends (and the run), before it suspends them."""
    try:
        client.create_or_update_tags(Tags=_record_tags(name, (RECORD_PROCESSES_TAG, RECORD_BY_TAG), record))
    except AWS_ERRORS as exc:
        raise describe_aws_error('record the processes to suspend in tags %s and %s of Auto Scaling group %s'
                                 % (RECORD_PROCESSES_TAG, RECORD_BY_TAG, name), exc) from exc


def delete_record(client, name):
    try:
        client.delete_tags(Tags=_record_tags(name, (RECORD_PROCESSES_TAG, RECORD_BY_TAG)))
    except AWS_ERRORS as exc:
        raise describe_aws_error('delete tags %s and %s of Auto Scaling group %s' % (RECORD_PROCESSES_TAG, RECORD_BY_TAG, name),
                                 exc) from exc


def enter_standby(client, name, instance_id):
    try:
        client.enter_standby(AutoScalingGroupName=name, InstanceIds=[instance_id], ShouldDecrementDesiredCapacity=True)
    except AWS_ERRORS as exc:
        raise describe_aws_error('put instance %s of Auto Scaling group %s in standby' % (instance_id, name), exc) from exc


def exit_standby(client, name, instance_id):
    try:
        client.exit_standby(AutoScalingGroupName=name, InstanceIds=[instance_id])
    except AWS_ERRORS as exc:
        raise describe_aws_error('return instance %s of Auto Scaling group %s to service' % (instance_id, name), exc) from exc


# --------------------------------------------------------------------------
# The whole operation
# --------------------------------------------------------------------------

class AutoScaling:
    """Read or change the Auto Scaling groups of a fleet. ``check_mode`` skips every mutating call."""

    def __init__(self, client, state, instance_ids=(), groups=(), processes=None, check_mode=False, stopwatch=None, record=None):
        self.client = client
        self.state = state
        self.instance_ids = list(instance_ids)
        self.group_names = list(groups)
        self.processes = processes
        self.record = record
        self.check_mode = check_mode
        self.stopwatch = stopwatch or Stopwatch()
        self.changed = False
        self.instances = []
        self.groups = []
        # What a failure must still report: the processes suspended before it.
        self.partial = {}

    def result(self, **extra):
        result = {'changed': self.changed, 'state': self.state, 'elapsed': self.stopwatch.elapsed(),
                  'instances': self.instances, 'groups': self.groups}
        result.update(extra)
        return result

    def run(self):
        try:
            return getattr(self, '_' + self.state)()
        except CanaryError as error:
            details = self.result(**self.partial)
            details.update(error.details)
            raise CanaryError(error.message, **details) from error

    # -- reading ---------------------------------------------------------

    def _read_instances(self):
        raw = describe_auto_scaling_instances(self.client, self.instance_ids) if self.instance_ids else {}
        self.instances = [instance_view(i, raw.get(i)) for i in self.instance_ids]
        return self.instances

    def _read_groups(self, names, refreshes=False):
        """Views of the named groups, in order; a name given in ``groups`` that does not exist is refused."""
        raw = describe_auto_scaling_groups(self.client, names) if names else {}
        missing = [name for name in names if name not in raw]
        if missing:
            given = [name for name in missing if name in self.group_names]
            if given:
                raise CanaryError('Invalid value for option groups: Auto Scaling group(s) %s not found in this account and region'
                                  % ', '.join(given), missing_groups=given)
            raise CanaryError('Failed to describe the Auto Scaling group(s) %s of the instances: not found (deleted meanwhile?)'
                              % ', '.join(missing), missing_groups=missing)
        views = [group_view(raw[name], describe_instance_refreshes(self.client, name) if refreshes else None) for name in names]
        self.groups = views
        return views

    def _all_group_names(self):
        names = list(self.group_names)
        for instance in self.instances:
            if instance['group'] and instance['group'] not in names:
                names.append(instance['group'])
        return names

    def _query(self):
        self._read_instances()
        self._read_groups(self._all_group_names(), refreshes=True)
        return self.result(problems=[p for g in self.groups for p in g['problems']])

    # -- processes -------------------------------------------------------

    def _suspended(self):
        self._read_instances()
        views = self._read_groups(self._all_group_names())
        now = {}
        for view in views:
            suspend, before = plan_suspend(self.processes, view['suspended_processes'])
            view['suspended_now'] = suspend
            view['suspended_before'] = before
            if suspend:
                now[view['name']] = suspend
        self.changed = bool(now)
        before = {v['name']: list(v['suspended_processes']) for v in views}
        for view in views:
            if self.record is not None and view['suspended_now']:
                view['record_after'] = merge_record(view['record'], view['suspended_now'], self.record)
        if not self.check_mode:
            done = self.partial['suspended_now'] = {}
            for view in views:
                if view['suspended_now']:
                    # The record first: a run that dies right after the call still leaves it.
                    if 'record_after' in view:
                        write_record(self.client, view['name'], view['record_after'])
                    suspend_processes(self.client, view['name'], view['suspended_now'])
                    done[view['name']] = view['suspended_now']
        for view in views:  # after the calls, or as predicted in check mode
            view['suspended_processes'] = sorted(set(view['suspended_processes']) | set(view['suspended_now']))
            view['record'] = view.pop('record_after', view['record'])
        return self.result(suspended_now=now, diff=self._diff(before, views))

    def _resumed(self):
        if self.processes == RECORDED:
            self._read_instances()
            views = self._read_groups(self._all_group_names())
            wanted = {v['name']: v['record']['processes'] if v['record'] else [] for v in views}
        else:
            views = self._read_groups(self.group_names)
            wanted = self.processes
        records = {v['name']: v['record'] for v in views if v['record']}
        now = {}
        for view in views:
            resume, idle = plan_resume(wanted[view['name']], view['suspended_processes'])
            view['resumed_now'] = resume
            view['not_suspended'] = idle
            if resume:
                now[view['name']] = resume
        before = {v['name']: list(v['suspended_processes']) for v in views}
        for view in views:
            view['record_after'] = shrink_record(view['record'], wanted[view['name']])
        self.changed = bool(now) or any(v['record_after'] != v['record'] for v in views)
        if not self.check_mode:
            for view in views:
                if view['resumed_now']:
                    resume_processes(self.client, view['name'], view['resumed_now'])
                # The record last: a run that dies before this resumes again, which changes nothing.
                if view['record_after'] != view['record']:
                    if view['record_after']:
                        write_record(self.client, view['name'], view['record_after'])
                    else:
                        delete_record(self.client, view['name'])
        for view in views:
            view['suspended_processes'] = [p for p in view['suspended_processes'] if p not in view['resumed_now']]
            view['record'] = view.pop('record_after')
        return self.result(resumed_now=now, records=records, diff=self._diff(before, views))

    @staticmethod
    def _diff(before, views):
        return {'before': {'suspended_processes': before},
                'after': {'suspended_processes': {v['name']: list(v['suspended_processes']) for v in views}}}

    # -- standby ---------------------------------------------------------

    def _one_instance(self, action):
        instance = self._read_instances()[0]
        if not instance['group']:
            raise CanaryError('Failed to %s: it is in no Auto Scaling group' % (action % instance['instance_id']))
        return instance, self._read_groups([instance['group']])[0]

    def _standby(self):
        instance, view = self._one_instance('put instance %s in standby')
        state = instance['lifecycle_state']
        if state in ('Standby', 'EnteringStandby'):
            return self.result()
        if state != 'InService':
            raise CanaryError('Failed to put instance %s in standby: its lifecycle state in Auto Scaling group %s is %s, not InService'
                              % (instance['instance_id'], view['name'], state))
        refusal = standby_refusal(instance['instance_id'], view)
        if refusal:
            raise CanaryError(refusal)
        self.changed = True
        if self.check_mode:
            return self.result()
        enter_standby(self.client, view['name'], instance['instance_id'])
        return self._reread()

    def _in_service(self):
        instance, view = self._one_instance('return instance %s to service')
        state = instance['lifecycle_state']
        if state in ('InService', 'Pending', 'Pending:Wait', 'Pending:Proceed'):
            return self.result()
        if state != 'Standby':
            raise CanaryError('Failed to return instance %s to service: its lifecycle state in Auto Scaling group %s is %s, not Standby'
                              % (instance['instance_id'], view['name'], state))
        self.changed = True
        if self.check_mode:
            return self.result()
        exit_standby(self.client, view['name'], instance['instance_id'])
        return self._reread()

    def _reread(self):
        """The instance and its group as AWS reports them after the call."""
        instance = self._read_instances()[0]
        self._read_groups([instance['group']] if instance['group'] else [])
        return self.result()
