"""The lab: a whole IIS-on-EC2-behind-an-ALB fleet with ELK, in one process.

Composes the wire-level doubles the module tests use:

- ALB control plane: moto in-process (``doubles.moto_alb.MotoALB``) whose
  target health comes from :class:`HealthChecker`, a real HTTPS health
  checker that probes every registered target like an ALB does;
- ALB data plane: :class:`lab.dataplane.DataPlane`, routing to targets that
  are registered, not draining and healthy *now*;
- Windows hosts: ``doubles.winrm_double.WinRMDouble``, one listener per host
  on its own loopback address (127.0.10.x), simulated IIS behind it with an
  ``applicationHost.config`` like production's (``add_production_site``: a
  gMSA pool, ``/api``, ``/static``, Windows authentication in a
  ``<location>``, request limits; a stopped ``Default Web Site`` beside it);
  when a site starts, a real HTTPS listener (:class:`lab.app_site.AppSite`)
  binds the host's address:443 and serves the app from the site's package;
- Elasticsearch: ``doubles.es_double.EsDouble``; every app request is
  indexed as an IIS log document;
- artifacts: :class:`lab.artifacts.ArtifactServer` serves built packages.

All addresses are loopback. See tests/lab/README.md for what is simpler than
AWS, IIS and Elasticsearch.
"""

from __future__ import annotations

import copy
import datetime
import http.client
import json
import os
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from moto.elbv2 import models as elbv2_models
from moto.elbv2.exceptions import ELBClientError

from doubles.es_double import EsDouble
from doubles.iis_sim import add_production_site
from doubles.moto_alb import AMI, MotoALB
from doubles.moto_asg import MotoASG
from doubles.winrm_double import WinRMDouble
from lab import packages
from lab.app_site import AppSite
from lab.artifacts import ArtifactServer
from lab.dataplane import DataPlane, PinnedHTTPSConnection
from lab.traffic import Traffic
from support.servers import server_tls_context
from support.tls import TestCA

PUBLIC_NAME = 'app.example.com'
APP = 'app.example.com'
GROUP = 'app-https'
LOG_INDEX_PREFIX = 'iis-logs-'
# The team's CloudWatch alarms on the app (moto): the rollout watches them (rollout_alarms).
LAB_ALARMS = ('app-target-5xx', 'app-target-p99')
# The hosts' Auto Scaling group (moto); not attached to the target group, so
# that it never registers a host itself.
LAB_ASG = 'app-asg'
# The tag that gives each lab instance its address (rollout_new_instances_address: tag:lab-address).
LAB_ADDRESS_TAG = 'lab-address'
WINRM_PORT = 5986
SITE_PORT = 443
LAB_PASSWORD = 'lab-Winrm-Pa55'  # a lab-only credential for the WinRM double
LAB_POOL_ACCOUNT = 'LAB\\svc-app$'  # the group Managed Service Account the app's pools run as


def loopback_network(network):
    """``network`` moved to ``127.<CANARY_LAB_OCTET>.x`` when that is set, so
    several checkouts can run their labs on one machine without sharing
    addresses (every lab host binds ``<address>:443``)."""
    octet = os.environ.get('CANARY_LAB_OCTET')
    if not octet:
        return network
    if not octet.isdigit() or not 0 <= int(octet) <= 255:
        raise ValueError('CANARY_LAB_OCTET must be 0-255; got %r' % (octet,))
    parts = network.split('.')
    return '.'.join([parts[0], octet] + parts[2:])


def host_address(index, network='127.0.10'):
    return '%s.%d' % (network, 11 + index)


class HealthChecker:
    """Probes ``/health`` of every registered target like an ALB.

    A target is ``initial`` from registration until ``healthy_threshold``
    consecutive passes, ``healthy`` afterwards, and ``unhealthy`` after
    ``unhealthy_threshold`` consecutive failures (it needs
    ``healthy_threshold`` passes to come back).
    """

    def __init__(self, lab, interval=1.0, timeout=2.0, healthy_threshold=2, unhealthy_threshold=2):
        self.lab = lab
        self.interval = interval
        self.timeout = timeout
        self.healthy_threshold = healthy_threshold
        self.unhealthy_threshold = unhealthy_threshold
        self.status = {}  # (arn, target) -> dict(state, passes, fails, registered_at, reason)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name='health-checker', daemon=True)

    def start(self):
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join(10)

    def decide(self, group_name, target_id):
        """The moto harness asks this for every registered target."""
        arn = self.lab.groups.get(group_name)
        with self._lock:
            entry = self.status.get((arn, target_id))
        if entry is None or entry['state'] == 'initial':
            return ('initial', 'Elb.RegistrationInProgress', 'Target registration is in progress')
        if entry['state'] == 'unhealthy':
            return ('unhealthy', 'Target.FailedHealthChecks', entry.get('reason') or 'Health checks failed')
        return None

    def is_healthy(self, arn, target_id):
        with self._lock:
            entry = self.status.get((arn, target_id))
        return entry is not None and entry['state'] == 'healthy'

    def healthy_since(self, arn, target_id):
        with self._lock:
            entry = self.status.get((arn, target_id)) or {}
        return entry.get('healthy_since', 0.0)

    def _probe(self, address):
        try:
            conn = PinnedHTTPSConnection(address, SITE_PORT, PUBLIC_NAME, self.lab.client_ctx, self.timeout)
            conn.request('GET', '/health', headers={'Host': PUBLIC_NAME, 'User-Agent': 'ELB-HealthChecker/2.0'})
            resp = conn.getresponse()
            resp.read()
            conn.close()
            if resp.status == 200:
                return True, ''
            return False, 'Health checks failed with these codes: [%d]' % resp.status
        except (OSError, http.client.HTTPException) as exc:
            return False, 'Request timed out' if isinstance(exc, TimeoutError) else 'Connection failed: %s' % type(exc).__name__

    def check_once(self):
        registered = self.lab.registered_targets()
        with self._lock:
            for key in [k for k in self.status if k not in registered]:
                del self.status[key]
        for (arn, target_id), registered_at in registered.items():
            with self._lock:
                entry = self.status.get((arn, target_id))
                if entry is None or entry['registered_at'] != registered_at:
                    entry = dict(state='initial', passes=0, fails=0, registered_at=registered_at, reason='')
                    self.status[(arn, target_id)] = entry
            address = self.lab.address_of(target_id)
            ok, reason = self._probe(address) if address else (False, 'unknown target')
            with self._lock:
                if ok:
                    entry['passes'] += 1
                    entry['fails'] = 0
                    if entry['passes'] >= self.healthy_threshold and entry['state'] != 'healthy':
                        entry['state'] = 'healthy'
                        entry['healthy_since'] = time.monotonic()
                else:
                    entry['fails'] += 1
                    entry['passes'] = 0
                    entry['reason'] = reason
                    if entry['fails'] >= self.unhealthy_threshold and entry['state'] == 'healthy':
                        entry['state'] = 'unhealthy'
                    elif entry['fails'] >= self.unhealthy_threshold and entry['state'] == 'initial':
                        entry['state'] = 'unhealthy'

    def _loop(self):
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.check_once()
            except Exception:  # pylint: disable=broad-except  # a checker must survive a transient error
                pass
            self._stop.wait(max(0.05, self.interval - (time.monotonic() - started)))


class Lab:
    """Everything the lab runs. ``start()`` brings every host to version 1."""

    def __init__(self, directory, hosts=3, drain_seconds=2.0, cold_start_s=2.0, health_interval=0.5, es_personality='es8',
                 network='127.0.10', region='eu-west-1'):
        if not network.startswith('127.') or network.count('.') != 2:
            raise ValueError('network must be three octets inside 127.0.0.0/8, e.g. 127.0.10; got %r' % (network,))
        self.dir = Path(directory)
        self.network = loopback_network(network)
        # Labs in one process need regions of their own (moto's state is global).
        self.region = region
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host_count = int(hosts)
        self.drain_seconds = float(drain_seconds)
        self.cold_start_s = float(cold_start_s)
        self.health_interval = float(health_interval)
        self.es_personality = es_personality
        self.hosts = {}  # name -> dict(address, instance_id, sim)
        self.groups = {}
        self.sites = {}  # (host, site name) -> AppSite
        self.packages = {}  # checksum -> manifest
        self.faults = {}
        # What the Auto Scaling group did to hosts that failed its health check (the asg-replace fault).
        self.autoscaling_actions = []
        self.traffic = None
        self._sites_lock = threading.RLock()
        self._stoppers = []
        self._throttle_until = 0.0
        self._throttle_original = None

    # -- lifecycle --------------------------------------------------------
    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self):
        self.ca = TestCA(self.dir / 'pki', name='immune.canary lab CA')
        cert, key = self.ca.issue([PUBLIC_NAME], stem='site')
        self.site_ctx = server_tls_context(cert, key)
        self.client_ctx = ssl.create_default_context(cafile=str(self.ca.ca_path))
        cert, key = self.ca.issue(['alb.lab.internal', PUBLIC_NAME, '127.0.0.1'], stem='alb')
        self.alb_ctx = server_tls_context(cert, key)

        self.es = EsDouble(personality=self.es_personality).start()
        self._stoppers.append(self.es.stop)
        self.artifacts = ArtifactServer(self.dir / 'packages')
        self._stoppers.append(self.artifacts.stop)

        self.alb = MotoALB(initial_seconds=0.0, region=self.region)
        self.alb.start()
        self._stoppers.append(self.alb.stop)
        self.checker = HealthChecker(self, interval=self.health_interval)
        self.alb.default_health = self.checker.decide
        seeded = self.alb.seed(instances=self.host_count, groups=((GROUP, 'HTTPS', SITE_PORT),), register=False,
                               deregistration_delay=int(self.drain_seconds) or 1, health_check_interval=5, healthy_threshold=2,
                               # Two zones, as fleets run: web1, web3, ... in zone a, web2, web4, ... in zone b.
                               spread=True)
        self.groups = dict(seeded['groups'])
        self.group_arn = self.groups[GROUP]
        self.load_balancer_arn = seeded['load_balancer_arn']
        self.subnets = seeded['subnets']

        self.winrm = WinRMDouble(user='canary', password=LAB_PASSWORD)
        self._stoppers.append(self.winrm.stop)
        self.instance_hosts = {}
        for index, instance_id in enumerate(seeded['instances']):
            self._add_host(index, instance_id)

        self.checker.start()
        self._stoppers.append(self.checker.stop)
        self.plane = DataPlane(self.routable, PUBLIC_NAME, self.ca.ca_path, self.alb_ctx)
        self._stoppers.append(self.plane.stop)

        self._seed_version_1()
        self._make_alarms()
        self.asg = MotoASG(self.alb).__enter__()
        self._stoppers.append(lambda: self.asg.__exit__(None, None, None))
        self.asg.create_group(LAB_ASG, [h['instance_id'] for h in self.hosts.values()], min_size=1, subnets=self.subnets,
                              target_groups=[self.group_arn], max_size=self.host_count + 10)  # room for scale-outs
        self._write_files()

    def stop(self):
        if self.traffic is not None:
            self.traffic.stop()
            self.traffic = None
        self._unthrottle()
        with self._sites_lock:
            for site in list(self.sites.values()):
                site.stop()
            self.sites.clear()
        while self._stoppers:
            stopper = self._stoppers.pop()
            try:
                stopper()
            except Exception:  # pylint: disable=broad-except  # stop everything else regardless
                pass

    # -- fleet seeding ------------------------------------------------------
    def _seed_version_1(self):
        build = self.build('1', cold_start_s=self.cold_start_s)
        site_name = '%s-1' % APP
        for host in self.hosts.values():
            sim = host['sim']
            path = 'D:\\sites\\%s' % site_name
            with sim.lock:
                sim.content[path] = dict(files=['manifest.json'], marker=dict(checksum=build['checksum'], size=build['size']))
                # The site as operations teams run it (see add_production_site): every deploy copies it.
                add_production_site(sim, site_name, path, [dict(protocol='https', ip='*', port=SITE_PORT, host_header='')], state='Stopped',
                                    identity='gmsa', user_name=LAB_POOL_ACCOUNT)
                # A neighbour that is not the app's: its site, pool and <location> must outlive every prune.
                sim.add_site('Default Web Site', [dict(protocol='http', ip='*', port=80, host_header='')], physical_path='C:\\inetpub\\wwwroot',
                             app_pool='DefaultAppPool', state='Stopped')
                sim.add_location('Default Web Site', '<system.webServer><directoryBrowse enabled="false" /></system.webServer>')
                sim.apply({'op': 'start_pool', 'name': site_name})
                sim.apply({'op': 'start_site', 'name': site_name})
            self._warm(host['address'])
        elbv2 = self.alb.client('elbv2')
        elbv2.register_targets(TargetGroupArn=self.group_arn, Targets=[{'Id': h['instance_id']} for h in self.hosts.values()])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(self.checker.is_healthy(self.group_arn, h['instance_id']) for h in self.hosts.values()):
                return
            time.sleep(0.1)
        raise RuntimeError('lab hosts did not become healthy in 30 s')

    def _make_alarms(self):
        cloudwatch = self.alb.client('cloudwatch')
        for name, metric, threshold in zip(LAB_ALARMS, ('HTTPCode_Target_5XX_Count', 'TargetResponseTime'), (10.0, 2.0), strict=True):
            cloudwatch.put_metric_alarm(AlarmName=name, MetricName=metric, Namespace='AWS/ApplicationELB', Statistic='Sum',
                                        Period=60, EvaluationPeriods=1, Threshold=threshold, ComparisonOperator='GreaterThanThreshold')
            self._set_alarm(name, 'OK', 'Threshold Crossed: no datapoint above %g' % threshold)

    def _add_host(self, index, instance_id):
        """A Windows host: its WinRM listener on its own address, its simulated IIS."""
        name = 'web%d' % (index + 1)
        address = host_address(index, self.network)
        sim = self.winrm.add_host(name)
        sim.on_site_start.append(self._site_started)
        sim.on_site_stop.append(self._site_stopped)
        cert, key = self.ca.issue([address, name], stem='winrm-' + name)
        self.winrm.listen(host=name, address=address, port=WINRM_PORT, tls_context=server_tls_context(cert, key))
        # The address, as a tag of the instance: moto's private addresses lie in the VPC, not on this machine.
        self.alb.client('ec2').create_tags(Resources=[instance_id], Tags=[{'Key': LAB_ADDRESS_TAG, 'Value': address},
                                                                          {'Key': 'Name', 'Value': name}])
        host = self.hosts[name] = dict(name=name, address=address, instance_id=instance_id, sim=sim)
        self.instance_hosts[instance_id] = host
        return host

    def scale_out(self, source):
        """A scale-out: the group launches an instance from the image ``source`` was made from, so it runs what ``source``
        runs now; it joins the Auto Scaling group and the target group, and serves once healthy. It is in no inventory."""
        if source not in self.hosts:
            raise ValueError('fault scale-out needs --host, the host whose image the new instance runs; lab hosts: %s'
                             % ', '.join(sorted(self.hosts)))
        index = len(self.hosts)
        ec2 = self.alb.client('ec2')
        instance_id = ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, InstanceType='t3.micro',
                                        SubnetId=self.subnets[index % 2])['Instances'][0]['InstanceId']
        host = self._add_host(index, instance_id)
        original, sim = self.hosts[source]['sim'], host['sim']
        with original.lock:
            sim.config = ET.fromstring(ET.tostring(original.config))
            sim.content = copy.deepcopy(original.content)
            sim.extra_sections = set(original.extra_sections)
            running = [n for n, state in original.site_state.items() if state == 'Started']
            sim.site_state = {n: 'Stopped' for n in original.site_state}
            sim.pool_state = {n: 'Stopped' for n in original.pool_state}
        with sim.lock:
            for name in running:
                sim.apply({'op': 'start_pool', 'name': name})
                sim.apply({'op': 'start_site', 'name': name})
        self._warm(host['address'])
        self.asg.client().attach_instances(AutoScalingGroupName=LAB_ASG, InstanceIds=[instance_id])
        self.alb.client('elbv2').register_targets(TargetGroupArn=self.group_arn, Targets=[{'Id': instance_id}])
        return host

    def _asg_replace(self, host, on):
        """What EC2 Auto Scaling does when ``host`` fails the group's ELB health check, as AWS documents it.

        HealthCheck marks the instance Unhealthy, then ReplaceUnhealthy
        terminates it (a replacement would boot on the launch template's
        version). Either process suspended stops the chain there. Terminated,
        the host stops answering WinRM and its site dies, so that the target
        group sees it go. ``on=False`` brings it back, InService and Healthy.
        """
        instance_id = self.hosts[host]['instance_id']
        client = self.asg.client()
        if not on:
            self.asg.set_lifecycle(instance_id, 'InService')
            client.set_instance_health(InstanceId=instance_id, HealthStatus='Healthy')
            self._host_down(host, False)
            return
        suspended = set(self.asg.suspended(LAB_ASG))
        if 'HealthCheck' in suspended:
            action = 'kept: HealthCheck suspended, not marked Unhealthy'
        else:
            client.set_instance_health(InstanceId=instance_id, HealthStatus='Unhealthy')
            if 'ReplaceUnhealthy' in suspended:
                action = 'kept: marked Unhealthy, ReplaceUnhealthy suspended'
            else:
                self.asg.set_lifecycle(instance_id, 'Terminating')
                self._host_down(host, True)
                action = 'replaced: terminated'
        self.autoscaling_actions.append({'host': host, 'instance_id': instance_id, 'action': action})

    def _host_down(self, host, down):
        self.hosts[host]['sim'].fault = 'down' if down else None
        with self._sites_lock:
            apps = [app for (name, _site), app in self.sites.items() if name == host]
        for app in apps:
            app.crashed = down

    def _set_alarm(self, name, state, reason):
        self.alb.client('cloudwatch').set_alarm_state(AlarmName=name, StateValue=state, StateReason=reason)

    def alarm_states(self):
        alarms = self.alb.client('cloudwatch').describe_alarms(AlarmNames=list(LAB_ALARMS))['MetricAlarms']
        return {a['AlarmName']: a['StateValue'] for a in alarms}

    def _warm(self, address, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = PinnedHTTPSConnection(address, SITE_PORT, PUBLIC_NAME, self.client_ctx, timeout)
                conn.request('GET', '/health', headers={'Host': PUBLIC_NAME})
                conn.getresponse().read()
                conn.close()
                return
            except (OSError, http.client.HTTPException):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # -- IIS hooks: a started site is a real listener ----------------------
    def _site_started(self, sim, site):
        host = self.hosts[sim.name]
        marker = (sim.content.get(site['physical_path']) or {}).get('marker') or {}
        manifest = self.packages.get(marker.get('checksum')) or packages.manifest_for('unknown', cold_start_s=self.cold_start_s)
        ports = sorted({int(b['port']) for b in site['bindings'] if b['protocol'] == 'https'}) or [SITE_PORT]
        with self._sites_lock:
            app = AppSite(site['name'], sim.name, host['address'], ports[0], self.site_ctx, manifest, log_sink=self._log)
            if self.faults.get(('health-fail', sim.name)):
                app.health_override = 500
            self.sites[(sim.name, site['name'])] = app

    def _site_stopped(self, sim, site):
        with self._sites_lock:
            app = self.sites.pop((sim.name, site['name']), None)
        if app is not None:
            app.stop()

    def _log(self, doc):
        day = datetime.datetime.now(datetime.timezone.utc).strftime('%Y.%m.%d')
        self.es.index_docs(LOG_INDEX_PREFIX + day, [doc])

    # -- ALB views --------------------------------------------------------------
    def _backend_group(self, arn):
        backend = elbv2_models.elbv2_backends[self._account()][self.alb.region]
        return backend.target_groups.get(arn)

    @staticmethod
    def _account():
        from moto.core import DEFAULT_ACCOUNT_ID  # pylint: disable=import-outside-toplevel
        return DEFAULT_ACCOUNT_ID

    def registered_targets(self):
        """(group arn, target id) -> registration time, for targets not draining."""
        out = {}
        with self.alb._lock:  # pylint: disable=protected-access
            for arn in self.groups.values():
                group = self._backend_group(arn)
                if group is None:
                    continue
                self.alb._expire(group)  # pylint: disable=protected-access
                for target_id in list(group.targets):
                    if (arn, target_id) in self.alb._draining_until:  # pylint: disable=protected-access
                        continue
                    out[(arn, target_id)] = self.alb._registered_at.get((arn, target_id))  # pylint: disable=protected-access
        return out

    def draining_targets(self):
        with self.alb._lock:  # pylint: disable=protected-access
            return set(self.alb._draining_until)  # pylint: disable=protected-access

    def address_of(self, target_id):
        host = self.instance_hosts.get(target_id)
        return host['address'] if host else None

    def routable(self):
        """Targets the data plane may send a new request to, now."""
        group = self._backend_group(self.group_arn)
        if group is not None:
            # The target group's slow start ramps a newly healthy target's share.
            self.plane.slow_start_s = float(group.attributes.get('slow_start.duration_seconds', 0) or 0)
        targets = []
        for (arn, target_id) in sorted(self.registered_targets()):
            if arn == self.group_arn and self.checker.is_healthy(arn, target_id):
                targets.append((target_id, self.address_of(target_id), SITE_PORT, self.checker.healthy_since(arn, target_id)))
        return targets

    # -- operations -----------------------------------------------------------
    def build(self, version, error_rate=None, latency_ms=None, cold_start_s=None, health_status=None, host_latency_ms=None,
              error_pattern=None):
        if cold_start_s is None:
            cold_start_s = self.cold_start_s
        path, checksum, manifest = packages.build_package(self.artifacts.dir, version, error_rate=error_rate, latency_ms=latency_ms,
                                                          cold_start_s=cold_start_s, health_status=health_status,
                                                          host_latency_ms=host_latency_ms, error_pattern=error_pattern)
        self.packages[checksum] = manifest
        return {'url': self.artifacts.url_for(path), 'checksum': checksum, 'size': path.stat().st_size, 'manifest': manifest}

    def state(self):
        draining = self.draining_targets()
        registered = self.registered_targets()
        routable = {t[0] for t in self.routable()}
        hosts = {}
        for name, host in self.hosts.items():
            sim = host['sim']
            with sim.lock:
                sites = [{'name': s['name'], 'state': s['state']} for s in sorted(sim.sites.values(), key=lambda s: s['id'])]
            target_state = {}
            for group_name, arn in self.groups.items():
                key = (arn, host['instance_id'])
                if key in draining:
                    target_state[group_name] = 'draining'
                elif key in registered:
                    decided = self.checker.decide(group_name, host['instance_id'])
                    target_state[group_name] = decided[0] if decided else 'healthy'
                else:
                    target_state[group_name] = 'unused'
            hosts[name] = {'address': host['address'], 'instance_id': host['instance_id'], 'sites': sites,
                           'running': [s['name'] for s in sites if s['state'] == 'Started'],
                           'target_state': target_state, 'routed': host['instance_id'] in routable}
        return {'hosts': hosts, 'routable': sorted(routable), 'faults': sorted('%s@%s' % k for k, v in self.faults.items() if v),
                'autoscaling_actions': list(self.autoscaling_actions)}

    def fault(self, name, host=None, off=False, alarm=None):
        on = not off
        names = [host] if host else sorted(self.hosts)
        for h in names:
            if h not in self.hosts:
                raise ValueError('unknown host %r; lab hosts: %s' % (h, ', '.join(sorted(self.hosts))))
        if name == 'alarm':
            # The team's alarm goes to ALARM (as when customers' errors cross its threshold), or back to OK.
            if alarm not in LAB_ALARMS:
                raise ValueError('fault alarm needs the name of a lab alarm; got %r; lab alarms: %s' % (alarm, ', '.join(LAB_ALARMS)))
            self._set_alarm(alarm, 'ALARM' if on else 'OK',
                            'Threshold Crossed: lab fault' if on else 'Threshold Crossed: lab fault cleared')
            self.faults[('alarm', alarm)] = on
        elif name == 'scale-out':
            # The Auto Scaling group launches an instance of --host's image into the target group.
            if off:
                raise ValueError('fault scale-out cannot be switched off; the instance stays (labctl down ends the lab)')
            self.scale_out(host)
            self.faults[(name, host)] = True
        elif name == 'asg-replace':
            # The group's health check fails the instance: replaced, unless the rollout suspended what does it.
            if not host:
                raise ValueError('fault asg-replace needs --host (the instance the group would replace)')
            self._asg_replace(host, on)
            self.faults[(name, host)] = on
        elif name == 'es-down':
            self.es.down = on
            self.faults[('es-down', '*')] = on
        elif name == 'aws-throttle':
            if on:
                self._throttle()
            else:
                self._unthrottle()
            self.faults[('aws-throttle', '*')] = on
        elif name == 'swap-fail':
            # Starting any other site than the one running now fails on the host (another process holds its port or files).
            for h in names:
                self.faults[(name, h)] = on
                sim = self.hosts[h]['sim']
                with sim.lock:
                    sim.refuse_start = {n for n in sim.sites if sim.site_state.get(n) != 'Started'} if on else set()
        elif name in ('winrm-down', 'site-crash', 'health-fail'):
            for h in names:
                self.faults[(name, h)] = on
                if name == 'winrm-down':
                    self.hosts[h]['sim'].fault = 'down' if on else None
                else:
                    with self._sites_lock:
                        apps = [app for (hn, _s), app in self.sites.items() if hn == h]
                    for app in apps:
                        if name == 'health-fail':
                            app.health_override = 500 if on else None
                        else:
                            app.crashed = on
        else:
            raise ValueError('unknown fault %r; valid: es-down, winrm-down, site-crash, health-fail, swap-fail, aws-throttle, alarm, '
                             'asg-replace, scale-out' % name)
        return self.state()['faults']

    def _throttle(self):
        if self._throttle_original is not None:
            return
        backend_cls = elbv2_models.ELBv2Backend
        names = ('describe_target_health', 'register_targets', 'deregister_targets', 'describe_target_groups')
        self._throttle_original = {n: backend_cls.__dict__[n] for n in names}

        def throttled(*_args, **_kwargs):
            raise ELBClientError('Throttling', 'Rate exceeded')

        for n in names:
            setattr(backend_cls, n, throttled)

    def _unthrottle(self):
        if self._throttle_original is None:
            return
        for n, func in self._throttle_original.items():
            setattr(elbv2_models.ELBv2Backend, n, func)
        self._throttle_original = None

    def start_traffic(self, rps=20.0):
        if self.traffic is not None:
            raise ValueError('traffic is already running')
        self.traffic = Traffic(self.plane.url, rps, self.ca.ca_path, PUBLIC_NAME).start()
        return {'rps': rps}

    def stop_traffic(self):
        if self.traffic is None:
            raise ValueError('no traffic is running')
        traffic, self.traffic = self.traffic, None
        return traffic.stop()

    # -- files for ansible-playbook ------------------------------------------------
    def _write_files(self):
        inventory = {'all': {'children': {'web': {'hosts': {}}}}}
        for name, host in self.hosts.items():
            inventory['all']['children']['web']['hosts'][name] = {
                'ansible_host': host['address'],
                'ansible_port': WINRM_PORT,
                'ansible_user': 'canary',
                'ansible_password': LAB_PASSWORD,
                'ansible_connection': 'winrm',
                'ansible_winrm_transport': 'basic',
                'ansible_winrm_scheme': 'https',
                'ansible_winrm_server_cert_validation': 'validate',
                'ansible_winrm_ca_trust_path': str(self.ca.ca_path),
                'instance_id': host['instance_id'],
            }
        self.inventory_path = self.dir / 'inventory.yml'
        self.inventory_path.write_text(json.dumps(inventory, indent=2), encoding='utf-8')
        self.vars = {
            'rollout_app': APP,
            'rollout_target_groups': [self.group_arn],
            'rollout_public_url': 'https://%s/health' % PUBLIC_NAME,
            'rollout_warmup_ca_path': str(self.ca.ca_path),
            'rollout_aws': self.alb.aws_options,
            'rollout_es_hosts': [self.es.url],
            'rollout_es_index': LOG_INDEX_PREFIX + '*',
            'rollout_events_index': 'deploy-events',
            'rollout_alarms': list(LAB_ALARMS),
            # An instance a scale-out adds is reached at the address its tag names.
            'rollout_new_instances_address': 'tag:' + LAB_ADDRESS_TAG,
            'rollout_new_instances_hostnames': ['tag:Name', 'instance-id'],
        }
        self.vars_path = self.dir / 'vars.yml'
        self.vars_path.write_text(json.dumps(self.vars, indent=2), encoding='utf-8')

    def describe(self):
        return {
            'dir': str(self.dir),
            'inventory': str(self.inventory_path),
            'vars': str(self.vars_path),
            'hosts': {n: {'address': h['address'], 'instance_id': h['instance_id']} for n, h in self.hosts.items()},
            'alb_url': self.plane.url,
            'aws_endpoint_url': self.alb.endpoint_url,
            'es_url': self.es.url,
            'artifacts_url': self.artifacts.url,
            'target_group_arn': self.group_arn,
            'ca_path': str(self.ca.ca_path),
        }
