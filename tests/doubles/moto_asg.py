"""Auto Scaling groups and CloudWatch alarms for :class:`doubles.moto_alb.MotoALB`.

moto 5.2.5 serves EC2 Auto Scaling and CloudWatch over the same server, with
real groups, suspended processes, Standby and alarms, but:

- it has no instance refreshes (``StartInstanceRefresh`` and
  ``DescribeInstanceRefreshes`` raise NotImplementedError), and no
  ``PutCompositeAlarm`` (its DescribeAlarms does list composite alarms);
- EnterStandby leaves the instance registered in the group's target groups,
  where AWS deregisters it (and ExitStandby registers it again);
- every change of capacity registers every instance of the group in its
  target groups again, including one the rollout has just deregistered, where
  AWS registers an instance once, when it joins the group.

:class:`MotoASG` adds, in this process, the two instance refresh calls (the
refresh is kept on moto's own backend, so moto's reset clears it, and the
tests move it on with :meth:`MotoASG.set_refresh`), and makes Standby and the
target group registrations behave as AWS does. It is used inside a running
MotoALB (the same server, region and credentials); the patches are removed
when the last harness stops.
"""

from __future__ import annotations

import datetime
import threading
import uuid

from moto.autoscaling import models as asg_models
from moto.autoscaling import responses as asg_responses
from moto.autoscaling.models import autoscaling_backends
from moto.cloudwatch import responses as cw_responses
from moto.core.responses import ActionResult

ACCOUNT = '123456789012'

_ACTIVE = []
_LOCK = threading.Lock()
_ORIGINALS = {}


def _refreshes(backend):
    if not hasattr(backend, 'canary_refreshes'):
        backend.canary_refreshes = {}
    return backend.canary_refreshes


# -- the calls moto lacks ------------------------------------------------------

def _start_instance_refresh(self):
    name = self._get_param('AutoScalingGroupName')
    refresh = {
        'InstanceRefreshId': str(uuid.uuid4()),
        'AutoScalingGroupName': name,
        'Status': 'Pending',
        'StatusReason': 'Waiting for the instance refresh to start',
        'PercentageComplete': 0,
        'InstancesToUpdate': len(self.autoscaling_backend.autoscaling_groups[name].instance_states),
        'StartTime': datetime.datetime.now(datetime.timezone.utc),
    }
    _refreshes(self.autoscaling_backend).setdefault(name, []).insert(0, refresh)   # newest first, as AWS lists them
    return ActionResult({'InstanceRefreshId': refresh['InstanceRefreshId']})


def _describe_instance_refreshes(self):
    name = self._get_param('AutoScalingGroupName')
    limit = int(self._get_param('MaxRecords') or 50)
    return ActionResult({'InstanceRefreshes': _refreshes(self.autoscaling_backend).get(name, [])[:limit]})


def _put_composite_alarm(self):
    # moto's PutMetricAlarm reads AlarmRule for exactly this reuse.
    return self.put_metric_alarm()


# -- Standby and registrations as AWS does them --------------------------------

def _enter_standby(backend, group_name, instance_ids, should_decrement):
    activities = _ORIGINALS['enter_standby_instances'](backend, group_name, instance_ids, should_decrement)
    group = backend.autoscaling_groups[group_name]
    for arn in group.target_group_arns:
        backend.elbv2_backend.deregister_targets(arn, [{'Id': i} for i in instance_ids])
    return activities


def _exit_standby(backend, group_name, instance_ids):
    activities = _ORIGINALS['exit_standby_instances'](backend, group_name, instance_ids)
    group = backend.autoscaling_groups[group_name]
    for arn in group.target_group_arns:
        backend.elbv2_backend.register_targets(arn, [{'Id': i} for i in instance_ids])
    return activities


def _update_attached_target_groups(backend, group_name):
    """Register only the instances that joined the group since the last call (AWS: once, when they join)."""
    group = backend.autoscaling_groups[group_name]
    known = group.__dict__.setdefault('canary_registered', set())
    joined = [s.instance.id for s in group.instance_states if s.instance.id not in known and s.lifecycle_state != 'Standby']
    known.intersection_update(s.instance.id for s in group.instance_states)
    if not group.target_group_arns or not joined:
        return
    for arn in group.target_group_arns:
        target_group = backend.elbv2_backend.target_groups[arn]
        backend.elbv2_backend.register_targets(arn, [{'Id': i, 'Port': target_group.port} for i in joined])
    known.update(joined)


PATCHES = {
    (asg_responses.AutoScalingResponse, 'start_instance_refresh'): _start_instance_refresh,
    (asg_responses.AutoScalingResponse, 'describe_instance_refreshes'): _describe_instance_refreshes,
    (cw_responses.CloudWatchResponse, 'put_composite_alarm'): _put_composite_alarm,
    (asg_models.AutoScalingBackend, 'enter_standby_instances'): _enter_standby,
    (asg_models.AutoScalingBackend, 'exit_standby_instances'): _exit_standby,
    (asg_models.AutoScalingBackend, 'update_attached_target_groups'): _update_attached_target_groups,
}


class MotoASG:
    """Auto Scaling groups and alarms on a running MotoALB. Use as a context manager."""

    def __init__(self, alb):
        self.alb = alb
        self.region = alb.region

    def __enter__(self):
        with _LOCK:
            if not _ACTIVE:
                for (cls, name), func in PATCHES.items():
                    _ORIGINALS[name] = cls.__dict__.get(name)
                    setattr(cls, name, func)
            _ACTIVE.append(self)
        return self

    def __exit__(self, *exc_info):
        with _LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
                if not _ACTIVE:
                    for (cls, name), _func in PATCHES.items():
                        original = _ORIGINALS.pop(name, None)
                        if original is None:
                            delattr(cls, name)
                        else:
                            setattr(cls, name, original)

    @property
    def backend(self):
        return autoscaling_backends[ACCOUNT][self.region]

    def client(self, service='autoscaling'):
        return self.alb.client(service)

    # -- seeding ---------------------------------------------------------

    def create_group(self, name, instance_ids, target_groups=(), min_size=1, max_size=None, subnets=None, suspended=()):
        """A real moto group whose instances are ``instance_ids`` (already running, e.g. MotoALB.seed's),
        attached to ``target_groups`` (ARNs). Its desired capacity is the number of instances."""
        autoscaling = self.client()
        subnets = subnets or self.alb.made['subnets'][:1]
        autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, InstanceId=instance_ids[0], MinSize=0, MaxSize=max_size or len(instance_ids) + 2,
            DesiredCapacity=0, VPCZoneIdentifier=','.join(subnets), TargetGroupARNs=list(target_groups),
            HealthCheckType='ELB', HealthCheckGracePeriod=60)
        autoscaling.attach_instances(AutoScalingGroupName=name, InstanceIds=list(instance_ids))
        autoscaling.update_auto_scaling_group(AutoScalingGroupName=name, MinSize=min_size)
        if suspended:
            autoscaling.suspend_processes(AutoScalingGroupName=name, ScalingProcesses=list(suspended))
        return name

    def suspended(self, name):
        group = self.client().describe_auto_scaling_groups(AutoScalingGroupNames=[name])['AutoScalingGroups'][0]
        return sorted(p['ProcessName'] for p in group['SuspendedProcesses'])

    def lifecycle(self, instance_id):
        found = self.client().describe_auto_scaling_instances(InstanceIds=[instance_id])['AutoScalingInstances']
        return found[0]['LifecycleState'] if found else None

    def set_lifecycle(self, instance_id, state):
        """Put an instance in a lifecycle state moto does not reach by itself (e.g. Pending, Terminating)."""
        for group in self.backend.autoscaling_groups.values():
            for instance_state in group.instance_states:
                if instance_state.instance.id == instance_id:
                    instance_state.lifecycle_state = state
                    return
        raise KeyError(instance_id)

    def set_refresh(self, name, status, percentage=None, reason=None):
        """Move the newest refresh of group ``name`` on (e.g. to InProgress, Successful, Cancelled)."""
        refresh = _refreshes(self.backend)[name][0]
        refresh['Status'] = status
        if percentage is not None:
            refresh['PercentageComplete'] = percentage
        refresh['StatusReason'] = reason or refresh['StatusReason']
        if status in ('Successful', 'Failed', 'Cancelled', 'RollbackSuccessful', 'RollbackFailed'):
            refresh['EndTime'] = datetime.datetime.now(datetime.timezone.utc)
        return refresh

    def alarm(self, name, state='OK', reason='Threshold not crossed'):
        """A metric alarm named ``name``, in ``state``."""
        cloudwatch = self.client('cloudwatch')
        cloudwatch.put_metric_alarm(AlarmName=name, MetricName='HTTPCode_Target_5XX_Count', Namespace='AWS/ApplicationELB',
                                    Statistic='Sum', Period=60, EvaluationPeriods=1, Threshold=10.0,
                                    ComparisonOperator='GreaterThanThreshold')
        cloudwatch.set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)
        return name
