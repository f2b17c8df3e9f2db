"""immune.canary.target_group_info through real ansible-playbook against moto over HTTP."""

from __future__ import annotations

from doubles.moto_alb import MotoALB
from doubles.moto_asg import MotoASG
from support.ansible_runner import run_module


def test_lists_the_instances_behind_the_groups_as_hosts():
    with MotoALB(initial_seconds=0.0, region='me-south-1') as alb, MotoASG(alb) as asg:
        made = alb.seed(instances=3, spread=True)
        ids = made['instances']
        asg.create_group('web-asg', ids[:2], min_size=1, subnets=made['subnets'])
        alb.client('ec2').create_tags(Resources=[ids[0]], Tags=[{'Key': 'reach', 'Value': '127.0.0.9'}])
        args = dict(alb.aws_options, target_groups=['web-https'], ansible_host_source='tag:reach')
        for check in (False, True):
            run = run_module('target_group_info', args, check=check)
            assert (run.failed, run.result['changed']) == (False, False), run.result
        hosts = {h['name']: h['vars'] for h in run.result['hosts']}
        assert sorted(hosts) == sorted(ids)
        first = hosts[ids[0]]
        assert (first['ansible_host'], first['availability_zone'], first['target_health']) == ('127.0.0.9', 'me-south-1a', 'healthy')
        assert (first['autoscaling_group'], first['autoscaling_lifecycle_state']) == ('web-asg', 'InService')
        assert (hosts[ids[1]]['availability_zone'], hosts[ids[2]]['autoscaling_group']) == ('me-south-1b', '')
        # No tag, no address: said, not guessed.
        assert 'ansible_host' not in hosts[ids[1]]
        assert run.result['unmapped'] == ['Host %s (%s) has no tag:reach; ansible_host is not set' % (i, i) for i in ids[1:]]

        run = run_module('target_group_info', dict(args, ansible_host_source='elastic-ip'))
        assert run.failed and run.result['msg'].startswith("Invalid value for option ansible_host_source: 'elastic-ip'; expected one of")
        run = run_module('target_group_info', dict(args, target_groups=['no-such-group']))
        assert run.failed and 'no-such-group' in run.result['msg']
