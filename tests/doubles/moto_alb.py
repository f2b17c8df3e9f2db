"""A local ELBv2/EC2 stand-in: moto's server in this process, with realistic target states.

moto 5.2.5 makes a registered target ``healthy`` at once, drops a deregistered
one at once (no ``draining``), raises InvalidTarget when a target that is not
registered is deregistered, and never reports ``unused``/``Target.NotInUse``
for a group without a load balancer. :class:`MotoALB` runs
``moto.server.ThreadedMotoServer`` on 127.0.0.1 (port 0) and wraps
``FakeTargetGroup.register/deregister/health_for`` so that:

- a registered target is ``initial`` for ``initial_seconds``, then ``healthy``,
  or whatever the per-target health callable says (pluggable, so real HTTPS
  health checks can be plugged in later);
- registering a target that is registered and not draining changes nothing;
- a deregistered target is ``draining`` for the group's
  ``deregistration_delay.timeout_seconds``, then gone;
- deregistering a draining or unregistered target is accepted, like AWS
  (``aws_like_deregister=False`` keeps moto's InvalidTarget);
- registering an instance of another VPC fails with InvalidTarget, like AWS;
- a group no load balancer uses reports ``unused``/``Target.NotInUse``.

Use as a context manager; the patches are removed, the backend reset and the
server stopped on exit, whatever happened. Credentials are fake and explicit.
Several harnesses may run in one process when each uses its own region (moto's
state is global to the process): the wrapper sends each group to the harness
of its region, and the state is reset only when the last harness stops.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request

import boto3
from moto.elbv2 import models as elbv2_models
from moto.elbv2.exceptions import ELBClientError, InvalidTargetError
from moto.server import ThreadedMotoServer

FAKE_ACCESS_KEY = 'AKIAMOTOFAKEACCESSKEY'
# A recognisable marker: tests assert it never shows up in any output.
FAKE_SECRET_KEY = 'moto-secret-MARKER-5f3c9e1d7a'
REGION = 'eu-west-1'
AMI = 'ami-12c6146b'


# Harnesses active in this process, and moto's own methods while any is.
_ACTIVE = []
_ACTIVE_LOCK = threading.Lock()
_ORIGINALS = {}


def _owner(group):
    """The newest active harness for the group's region (ARNs carry it)."""
    region = group.arn.split(':')[3]
    for harness in reversed(_ACTIVE):
        if harness.region == region:
            return harness
    return None


def healthy(_group_name, _target_id):
    """Default health decision: every target passes its health checks."""
    return None


class MotoALB:
    """moto server + realistic target lifecycle. See the module docstring."""

    def __init__(self, initial_seconds=0.3, region=REGION, aws_like_deregister=True, clock=time.monotonic):
        self.initial_seconds = initial_seconds
        self.region = region
        self.aws_like_deregister = aws_like_deregister
        self.clock = clock
        # (group arn, target id) -> health callable(group_name, target_id)
        self.health = {}
        self.default_health = healthy
        self._registered_at = {}
        self._draining_until = {}
        # every register/deregister call that reached moto: (action, group arn, target ids)
        self.mutations = []
        self._lock = threading.RLock()
        self._server = None
        self._originals = None
        self.endpoint_url = None

    # -- lifecycle -------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        # werkzeug logs every request to stderr; tests want quiet output.
        self._log_level = logging.getLogger('werkzeug').level
        logging.getLogger('werkzeug').setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)
        self._server.start()
        try:
            host, port = self._server.get_host_and_port()
            self.endpoint_url = 'http://%s:%d' % (host, port)
            # moto's state is global to the process: reset it only when no
            # other harness (in another region) is using it.
            if not _ACTIVE:
                self._reset()
            self._patch()
        except BaseException:
            self.stop()
            raise

    def stop(self):
        try:
            self._unpatch()
            if self._server is not None and self.endpoint_url and not _ACTIVE:
                self._reset()
        finally:
            if self._server is not None:
                self._server.stop()
                self._server = None
                logging.getLogger('werkzeug').setLevel(self._log_level)

    def _reset(self):
        request = urllib.request.Request(self.endpoint_url + '/moto-api/reset', data=b'', method='POST')
        # Resetting every backend is CPU work: allow for a loaded machine.
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()

    # -- clients and module options -------------------------------------

    def client(self, service):
        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url,
                            aws_access_key_id=FAKE_ACCESS_KEY, aws_secret_access_key=FAKE_SECRET_KEY)

    @property
    def aws_options(self):
        """Module options that point at this server with the fake credentials."""
        return {'endpoint_url': self.endpoint_url, 'region': self.region,
                'access_key': FAKE_ACCESS_KEY, 'secret_key': FAKE_SECRET_KEY}

    @property
    def aws_params(self):
        """The same, as the full parameter dict ``_aws.aws_client`` expects."""
        return dict(self.aws_options, profile=None, session_token=None, validate_certs=True, aws_ca_bundle=None)

    # -- seeding ---------------------------------------------------------

    def seed(self, instances=3, groups=(('web-https', 'HTTPS', 443), ('web-http', 'HTTP', 80)),
             orphan_group=None, deregistration_delay=1, register=True, health_check_interval=5, healthy_threshold=2, spread=False):
        """Create a VPC, two subnets, running instances, an ALB and target groups.

        The instances are in the first subnet (zone a), or with ``spread``
        in both, alternately (the first in zone a, the second in zone b, ...).

        Every group in ``groups`` is forwarded to by a listener of the ALB;
        ``orphan_group`` (a name) is a group no load balancer uses. With
        ``register`` every instance starts registered and healthy in every
        group with a load balancer. Returns a dict of ids and ARNs.
        """
        ec2, elbv2 = self.client('ec2'), self.client('elbv2')
        vpc = ec2.create_vpc(CidrBlock='10.20.0.0/16')['Vpc']['VpcId']
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock='10.20.%d.0/24' % i, AvailabilityZone=self.region + zone)['Subnet']['SubnetId']
                   for i, zone in ((1, 'a'), (2, 'b'))]
        if spread:
            instance_ids = [ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, InstanceType='t3.micro',
                                              SubnetId=subnets[index % 2])['Instances'][0]['InstanceId'] for index in range(instances)]
        else:
            reservation = ec2.run_instances(ImageId=AMI, MinCount=instances, MaxCount=instances, InstanceType='t3.micro',
                                            SubnetId=subnets[0])
            instance_ids = [i['InstanceId'] for i in reservation['Instances']]
        lb = elbv2.create_load_balancer(Name='canary-alb', Subnets=subnets, Type='application', Scheme='internal')['LoadBalancers'][0]
        made = {'vpc_id': vpc, 'subnets': subnets, 'instances': instance_ids, 'load_balancer_arn': lb['LoadBalancerArn'], 'groups': {}}
        for index, (name, protocol, port) in enumerate(groups):
            arn = self._make_group(elbv2, name, protocol, port, vpc, deregistration_delay, health_check_interval, healthy_threshold)
            elbv2.create_listener(LoadBalancerArn=lb['LoadBalancerArn'], Protocol='HTTP', Port=8000 + index,
                                  DefaultActions=[{'Type': 'forward', 'TargetGroupArn': arn}])
            made['groups'][name] = arn
        if orphan_group:
            made['groups'][orphan_group] = self._make_group(elbv2, orphan_group, 'HTTP', 80, vpc, deregistration_delay,
                                                            health_check_interval, healthy_threshold)
        if register:
            for name, _protocol, _port in groups:
                arn = made['groups'][name]
                elbv2.register_targets(TargetGroupArn=arn, Targets=[{'Id': i} for i in instance_ids])
                with self._lock:
                    for instance in instance_ids:
                        self._registered_at[(arn, instance)] = float('-inf')
        return made

    @staticmethod
    def _make_group(elbv2, name, protocol, port, vpc, delay, interval, threshold):
        arn = elbv2.create_target_group(
            Name=name, Protocol=protocol, Port=port, VpcId=vpc, TargetType='instance', HealthCheckPath='/health',
            HealthCheckIntervalSeconds=interval, HealthCheckTimeoutSeconds=2, HealthyThresholdCount=threshold,
        )['TargetGroups'][0]['TargetGroupArn']
        elbv2.modify_target_group_attributes(TargetGroupArn=arn, Attributes=[
            {'Key': 'deregistration_delay.timeout_seconds', 'Value': str(delay)}])
        return arn

    def set_health(self, group_arn, target_id, decide):
        """Plug in the health decision for one target: ``decide(group_name, target_id)``
        returns None (passes) or ``(state, reason, description)``."""
        with self._lock:
            self.health[(group_arn, target_id)] = decide

    def state_of(self, group_arn, target_id):
        """The target's state as the ELBv2 API reports it now (via boto3)."""
        descriptions = self.client('elbv2').describe_target_health(TargetGroupArn=group_arn)['TargetHealthDescriptions']
        for desc in descriptions:
            if desc['Target']['Id'] == target_id:
                return desc['TargetHealth']['State']
        return None

    # -- the wrapper -----------------------------------------------------

    def _patch(self):
        """Install the wrapper once per process; several harnesses (each in its
        own region) may be active at once, each group goes to its region's."""
        with _ACTIVE_LOCK:
            if not _ACTIVE:
                cls = elbv2_models.FakeTargetGroup
                _ORIGINALS.update({name: cls.__dict__[name] for name in ('register', 'deregister', 'health_for')})

                def register(group, targets):
                    owner = _owner(group)
                    if owner is None:
                        return _ORIGINALS['register'](group, targets)
                    return owner._register(group, targets, _ORIGINALS['register'])

                def deregister(group, targets):
                    owner = _owner(group)
                    if owner is None:
                        return _ORIGINALS['deregister'](group, targets)
                    return owner._deregister(group, targets)

                def health_for(group, target, ec2_backend):
                    owner = _owner(group)
                    if owner is None:
                        return _ORIGINALS['health_for'](group, target, ec2_backend)
                    return owner._health_for(group, target, ec2_backend, _ORIGINALS['health_for'])

                cls.register = register
                cls.deregister = deregister
                cls.health_for = health_for
            _ACTIVE.append(self)
            self._originals = _ORIGINALS

    def _unpatch(self):
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
                if not _ACTIVE:
                    for name, func in _ORIGINALS.items():
                        setattr(elbv2_models.FakeTargetGroup, name, func)
                    _ORIGINALS.clear()
            self._originals = None

    def _expire(self, group):
        now = self.clock()
        for (arn, target_id), until in list(self._draining_until.items()):
            if arn == group.arn and until <= now:
                del self._draining_until[(arn, target_id)]
                self._registered_at.pop((arn, target_id), None)
                entry = group.targets.pop(target_id, None)
                if entry is not None:
                    group.deregistered_targets[target_id] = entry

    def _register(self, group, targets, original):
        with self._lock:
            self.mutations.append(('register', group.arn, [t['Id'] for t in targets]))
            self._expire(group)
            for target in targets:
                instance = group.ec2_backend.get_instance_by_id(target['Id'])
                if instance is not None and instance.state == 'running' and instance.vpc_id != group.vpc_id:
                    raise ELBClientError('InvalidTarget', "The following targets are not in the target group's VPC '%s': '%s'"
                                         % (group.vpc_id, target['Id']))
            # Registering a target that is registered (and not draining) changes nothing on AWS.
            fresh = [t['Id'] for t in targets if t['Id'] not in group.targets or (group.arn, t['Id']) in self._draining_until]
            original(group, targets)
            now = self.clock()
            for target_id in fresh:
                self._draining_until.pop((group.arn, target_id), None)
                self._registered_at[(group.arn, target_id)] = now

    def _deregister(self, group, targets):
        with self._lock:
            self.mutations.append(('deregister', group.arn, [t['Id'] for t in targets]))
            self._expire(group)
            delay = float(group.attributes.get('deregistration_delay.timeout_seconds', 300))
            for target in targets:
                key = (group.arn, target['Id'])
                if key in self._draining_until:
                    continue
                if target['Id'] not in group.targets:
                    if self.aws_like_deregister:
                        continue
                    raise InvalidTargetError()
                self._draining_until[key] = self.clock() + delay

    def _health_for(self, group, target, ec2_backend, original):
        with self._lock:
            self._expire(group)
            key = (group.arn, target['Id'])
            entry = group.targets.get(target['Id'])
            if entry is None:
                return original(group, target, ec2_backend)
            status = original(group, target, ec2_backend)
            if key in self._draining_until:
                return self._status(status, 'draining', 'Target.DeregistrationInProgress', 'Target deregistration is in progress')
            if status.status != 'healthy':
                return status
            if not group.load_balancer_arns:
                return self._status(status, 'unused', 'Target.NotInUse', 'Target group is not configured to receive traffic from the load balancer')
            if self.clock() - self._registered_at.get(key, float('-inf')) < self.initial_seconds:
                return self._status(status, 'initial', 'Elb.RegistrationInProgress', 'Target registration is in progress')
            decide = self.health.get(key, self.default_health)
            verdict = decide(group.name, target['Id'])
            if verdict:
                return self._status(status, *verdict)
            return status

    @staticmethod
    def _status(status, state, reason, description):
        return elbv2_models.FakeHealthStatus(status.instance_id, status.port, status.health_check_port, state, reason, description)
