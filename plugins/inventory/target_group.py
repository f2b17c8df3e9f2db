# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: target_group
short_description: The hosts registered in ELBv2 target groups
version_added: 0.1.0
description:
  - The fleet is the target group. One host per EC2 instance registered in any of the given target groups, whatever its
    health, with the instance's id, addresses, zone and tags, and its registrations (group, port, health).
  - One group per target group, named after it (C(web-https) becomes C(web_https)), after O(group_prefix).
  - Uses a YAML configuration file whose name ends with C(target_group.yml) or C(target_group.yaml).
  - Only target groups of target type C(instance) are supported; an C(ip), C(lambda) or C(alb) target group is refused
    with an error naming it. List the hosts of an C(ip) target group in a static inventory with C(rollout_target_id).
  - Each host's C(instance_id) is what the M(immune.canary.alb_target) module and the C(immune.canary.rollout) role
    need, so an inventory from this plugin works with the playbooks unchanged; add the WinRM connection variables
    with O(compose) or C(group_vars).
author:
  - immune.canary maintainers (@immune)
extends_documentation_fragment:
  - ansible.builtin.constructed
  - ansible.builtin.inventory_cache
  - immune.canary.aws.plugins
options:
  plugin:
    description: Marks this file as a source for this plugin.
    required: true
    type: str
    choices: [immune.canary.target_group]
  target_groups:
    description:
      - The target groups whose registered targets are the hosts, by name or ARN (both may be mixed).
      - They must be in the one region of O(region). A name that does not exist fails with a message naming it.
    type: list
    elements: str
    required: true
  hostnames:
    description:
      - Where the inventory host name comes from, in order of precedence; the first source the instance has a value for
        wins, and the instance id is the last resort.
      - V(instance-id), V(private-ip-address), V(private-dns-name), V(ip-address) (public IP), V(dns-name) (public DNS name),
        or V(tag:<key>) for the value of a tag, such as V(tag:Name). These are the names of P(amazon.aws.aws_ec2#inventory)'s
        O(hostnames) option.
      - V(private-ip), V(private-dns), V(public-ip) and V(public-dns) are accepted as shorter names.
      - Two instances with the same host name are an error (an Auto Scaling group often gives all its instances one
        C(Name) tag); add V(instance-id) after such a source.
    type: list
    elements: str
    default: [instance-id]
  ansible_host_source:
    description:
      - Where C(ansible_host), the address Ansible connects to, comes from. The same sources as O(hostnames).
      - A host without a value for it gets no C(ansible_host), and a warning is shown.
      - O(compose) can still set C(ansible_host) from any host variable; it wins.
    type: str
    default: private-ip-address
  group_prefix:
    description:
      - Prefix of the group made for each target group.
    type: str
    default: ''
  autoscaling:
    description:
      - Add each instance's EC2 Auto Scaling group and lifecycle state as the host variables C(autoscaling_group) and
        C(autoscaling_lifecycle_state), read with C(DescribeAutoScalingInstances) (50 instances a call).
      - Set to V(false) when the credentials may not call C(autoscaling:DescribeAutoScalingInstances); the two
        variables are then not set.
    type: bool
    default: true
    version_added: 0.2.0
notes:
  - "Host variables: C(instance_id), C(availability_zone), C(private_ip_address), C(private_dns_name), C(public_ip_address),
    C(public_dns_name), C(instance_state), C(instance_type), C(platform), C(vpc_id), C(subnet_id), C(image_id), C(launch_time)."
  - "C(ec2_tags): a dict of the instance's tags (not C(tags), a reserved name that Ansible warns about, as P(amazon.aws.aws_ec2#inventory)
    does since it added C(ec2_tags))."
  - "C(target_groups): a list of dicts with C(name), C(arn), C(port), C(state), C(reason), C(description), one per registration;
    C(target_group_names), C(target_group_arns); C(target_port), the port of the first registration; C(target_health), the least
    healthy state of all registrations, from best to worst C(healthy), C(initial), C(unused), C(draining), C(unhealthy.draining),
    C(unavailable), C(unhealthy)."
  - "C(autoscaling_group): the name of the instance's Auto Scaling group, C(autoscaling_lifecycle_state): its lifecycle state in the
    group (C(InService), C(Standby), C(Pending) ...); both are empty strings for an instance in no group, so that O(keyed_groups)
    with C(default_value) can name those too. Not set with O(autoscaling=false). Added in version 0.2.0."
  - The calls are DescribeTargetGroups, DescribeTargetHealth, DescribeInstances and DescribeAutoScalingInstances; the IAM policy needs
    C(elasticloadbalancing:DescribeTargetGroups), C(elasticloadbalancing:DescribeTargetHealth), C(ec2:DescribeInstances) and,
    unless O(autoscaling=false), C(autoscaling:DescribeAutoScalingInstances).
seealso:
  - module: immune.canary.alb_target
  - plugin: amazon.aws.aws_ec2
    plugin_type: inventory
"""

EXAMPLES = r"""
# inventory/web.target_group.yml: the hosts behind one target group, reached
# on their private IP, named after their Name tag.
plugin: immune.canary.target_group
region: eu-west-1
target_groups:
  - app-https
hostnames:
  - tag:Name
  - instance-id

# Two groups by name and ARN, groups by zone and by health, WinRM variables,
# and a cache so that a run does not call AWS for every ansible-playbook.
plugin: immune.canary.target_group
region: eu-west-1
profile: deploy
target_groups:
  - app-https
  - arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/app-http/0123456789abcdef
ansible_host_source: private-dns-name
keyed_groups:
  - key: availability_zone
    prefix: az
  - key: target_health
    prefix: health
  - key: ec2_tags.Role
    prefix: role
    default_value: none
  - key: autoscaling_group
    prefix: asg
    default_value: none
  - key: autoscaling_lifecycle_state
    prefix: lifecycle
groups:
  in_service: target_health == 'healthy'
compose:
  ansible_connection: "'winrm'"
  ansible_port: "5986"
  ansible_winrm_transport: "'kerberos'"
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/ansible-inventory
cache_timeout: 300
"""

from ansible.errors import AnsibleParserError  # noqa: E402
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable  # noqa: E402
from ansible.utils.display import Display  # noqa: E402

from ansible_collections.immune.canary.plugins.module_utils._aws import HAS_BOTO3, aws_client  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._target_group_inventory import build_hosts, collect, validate_options  # noqa: E402

display = Display()

AWS_OPTIONS = ('region', 'profile', 'access_key', 'secret_key', 'session_token', 'endpoint_url', 'validate_certs', 'aws_ca_bundle')
# A profile names its own credentials; explicit keys would silently win.
EXCLUSIVE_WITH_PROFILE = ('access_key', 'secret_key', 'session_token')


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):

    NAME = 'immune.canary.target_group'

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(('target_group.yml', 'target_group.yaml'))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        if not HAS_BOTO3:
            raise AnsibleParserError('The immune.canary.target_group inventory plugin requires boto3 and botocore')
        try:
            refs, hostnames, source = validate_options(
                self.get_option('target_groups'), self.get_option('hostnames'), self.get_option('ansible_host_source'))
            data = self._fleet(path, refs, cache)
            hosts, groups, warnings = build_hosts(data, hostnames, source, self.get_option('group_prefix'))
        except CanaryError as exc:
            raise AnsibleParserError(exc.message) from exc
        for warning in warnings:
            display.warning(warning)
        self._populate(hosts, groups)

    def _aws_params(self):
        params = {name: self.get_option(name) for name in AWS_OPTIONS}
        if params['profile']:
            both = [name for name in EXCLUSIVE_WITH_PROFILE if params[name]]
            if both:
                raise CanaryError('Invalid options: profile may not be used together with %s (the profile names its own credentials)'
                                  % ', '.join(both))
        if not params['validate_certs']:
            display.warning('validate_certs is false: the AWS endpoint certificate is not checked')
        return params

    def _fleet(self, path, refs, cache):
        """The collected data, from the cache when allowed and present."""
        use_cache = self.get_option('cache')
        key = self.get_cache_key(path)
        if use_cache and cache:
            try:
                data = self._cache[key]
            except KeyError:
                data = None
            # A fleet cached before (or without) the Auto Scaling read is read again when it is wanted now.
            if data is not None and ('autoscaling' in data) == bool(self.get_option('autoscaling')):
                return data
        params = self._aws_params()
        autoscaling = aws_client(params, 'autoscaling') if self.get_option('autoscaling') else None
        data = collect(aws_client(params, 'elbv2'), aws_client(params, 'ec2'), refs, autoscaling)
        if use_cache:
            self._cache[key] = data
        return data

    def _populate(self, hosts, groups):
        strict = self.get_option('strict')
        for group in groups:
            self.inventory.add_group(group)
        for host in hosts:
            name = host['name']
            self.inventory.add_host(name)
            for var, value in host['vars'].items():
                self.inventory.set_variable(name, var, value)
            hostvars = self.inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option('compose'), hostvars, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option('groups'), hostvars, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option('keyed_groups'), hostvars, name, strict=strict)
        for group, members in groups.items():
            for name in members:
                self.inventory.add_child(group, name)
