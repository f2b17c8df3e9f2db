"""The Auto Scaling additions to the moto stand-in behave as AWS does, and leave moto as they found it."""

from __future__ import annotations

from doubles import moto_asg
from doubles.moto_alb import MotoALB
from doubles.moto_asg import MotoASG


def test_refreshes_standby_and_registrations_like_aws_then_unpatched():
    originals = {key: key[0].__dict__.get(key[1]) for key in moto_asg.PATCHES}
    with MotoALB(initial_seconds=0.0, region='ap-northeast-2') as alb, MotoASG(alb) as fleet:
        made = alb.made = alb.seed(instances=3, groups=(('web', 'HTTP', 80),), deregistration_delay=30)
        arn, ids = made['groups']['web'], made['instances']
        fleet.create_group('web-asg', ids, target_groups=[arn], min_size=1)
        autoscaling = fleet.client()

        refresh = autoscaling.start_instance_refresh(AutoScalingGroupName='web-asg')['InstanceRefreshId']
        listed = autoscaling.describe_instance_refreshes(AutoScalingGroupName='web-asg')['InstanceRefreshes']
        assert [(r['InstanceRefreshId'], r['Status'], r['InstancesToUpdate']) for r in listed] == [(refresh, 'Pending', 3)]
        fleet.set_refresh('web-asg', 'Cancelled')
        assert autoscaling.describe_instance_refreshes(AutoScalingGroupName='web-asg')['InstanceRefreshes'][0]['Status'] == 'Cancelled'

        # The rollout deregisters one instance; a capacity change elsewhere must not register it again.
        alb.client('elbv2').deregister_targets(TargetGroupArn=arn, Targets=[{'Id': ids[2]}])
        autoscaling.enter_standby(AutoScalingGroupName='web-asg', InstanceIds=[ids[0]], ShouldDecrementDesiredCapacity=True)
        assert [alb.state_of(arn, i) for i in ids] == ['draining', 'healthy', 'draining']
        autoscaling.exit_standby(AutoScalingGroupName='web-asg', InstanceIds=[ids[0]])
        assert [alb.state_of(arn, i) for i in ids] == ['healthy', 'healthy', 'draining']
        assert [fleet.lifecycle(i) for i in ids] == ['InService'] * 3

        fleet.alarm('web-5xx', 'ALARM', 'Threshold Crossed')
        alb.client('cloudwatch').put_composite_alarm(AlarmName='web-any', AlarmRule='ALARM("web-5xx")')
        described = alb.client('cloudwatch').describe_alarms(AlarmNames=['web-5xx', 'web-any'], AlarmTypes=['MetricAlarm', 'CompositeAlarm'])
        assert [a['StateValue'] for a in described['MetricAlarms']] == ['ALARM']
        assert [a['AlarmName'] for a in described['CompositeAlarms']] == ['web-any']
    assert {key: key[0].__dict__.get(key[1]) for key in moto_asg.PATCHES} == originals
