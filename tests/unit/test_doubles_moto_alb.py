"""The moto ELBv2 stand-in gives AWS-like target states and cleans up after itself."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from moto.elbv2 import models as elbv2_models

from doubles.moto_alb import MotoALB


def wait_state(alb, arn, target, wanted, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = alb.state_of(arn, target)
        if state == wanted:
            return state
        time.sleep(0.05)
    return alb.state_of(arn, target)


def test_lifecycle_initial_healthy_draining_gone():
    originals = {name: elbv2_models.FakeTargetGroup.__dict__[name] for name in ('register', 'deregister', 'health_for')}
    # initial lasts long enough to be seen on a loaded machine (0.3 s was not, once, in CI).
    with MotoALB(initial_seconds=2.0) as alb:
        made = alb.seed(instances=2, groups=(('web', 'HTTP', 80),), deregistration_delay=1, register=False)
        arn, target = made['groups']['web'], made['instances'][0]
        elbv2 = alb.client('elbv2')
        elbv2.register_targets(TargetGroupArn=arn, Targets=[{'Id': target}])
        assert alb.state_of(arn, target) == 'initial'
        assert wait_state(alb, arn, target, 'healthy') == 'healthy'
        elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{'Id': target}])
        assert alb.state_of(arn, target) == 'draining'
        elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{'Id': target}])      # tolerated while draining, like AWS
        assert wait_state(alb, arn, target, None) is None
        elbv2.deregister_targets(TargetGroupArn=arn, Targets=[{'Id': target}])      # tolerated when absent, like AWS
        url = alb.endpoint_url
    # Unpatched and stopped.
    assert {name: elbv2_models.FakeTargetGroup.__dict__[name] for name in originals} == originals
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + '/moto-api/', timeout=2)


def test_pluggable_health_not_in_use_vpc_and_strict_deregister():
    with MotoALB(initial_seconds=0.0, aws_like_deregister=False) as alb:
        made = alb.seed(instances=2, groups=(('web', 'HTTP', 80),), orphan_group='orphan')
        web, orphan = made['groups']['web'], made['groups']['orphan']
        sick, well = made['instances']
        alb.set_health(web, sick, lambda group, target: ('unhealthy', 'Target.FailedHealthChecks', '%s failed in %s' % (target, group)))
        descriptions = {d['Target']['Id']: d['TargetHealth'] for d in
                        alb.client('elbv2').describe_target_health(TargetGroupArn=web)['TargetHealthDescriptions']}
        assert descriptions[sick] == {'State': 'unhealthy', 'Reason': 'Target.FailedHealthChecks', 'Description': '%s failed in web' % sick}
        assert descriptions[well]['State'] == 'healthy'

        elbv2 = alb.client('elbv2')
        elbv2.register_targets(TargetGroupArn=orphan, Targets=[{'Id': well}])
        health = elbv2.describe_target_health(TargetGroupArn=orphan)['TargetHealthDescriptions'][0]['TargetHealth']
        assert (health['State'], health['Reason']) == ('unused', 'Target.NotInUse')

        with pytest.raises(ClientError) as info:
            elbv2.deregister_targets(TargetGroupArn=orphan, Targets=[{'Id': sick}])
        assert info.value.response['Error']['Code'] == 'InvalidTarget'

        ec2 = alb.client('ec2')
        other_vpc = ec2.create_vpc(CidrBlock='10.99.0.0/16')['Vpc']['VpcId']
        subnet = ec2.create_subnet(VpcId=other_vpc, CidrBlock='10.99.1.0/24')['Subnet']['SubnetId']
        stranger = ec2.run_instances(ImageId='ami-12c6146b', MinCount=1, MaxCount=1, SubnetId=subnet)['Instances'][0]['InstanceId']
        with pytest.raises(ClientError) as info:
            elbv2.register_targets(TargetGroupArn=web, Targets=[{'Id': stranger}])
        assert info.value.response['Error']['Code'] == 'InvalidTarget'
        assert 'VPC' in info.value.response['Error']['Message']
