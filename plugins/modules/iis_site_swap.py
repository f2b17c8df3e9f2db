#!/usr/bin/python
# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: iis_site_swap
short_description: Make exactly one IIS site of an application run on a Windows host
version_added: 0.1.0
description:
  - Reaches the host over WinRM with pywinrm and runs a fixed PowerShell script (Windows PowerShell 5.1, C(WebAdministration)).
  - The sites of an application O(app) are the site named O(app) and every site whose name starts with O(app) followed by C(-),
    for example C(app.example.com-3457). Each has its own app pool.
  - With O(state=started) the site O(active) runs and every other site of the application, and its app pool, is stopped first.
    With O(state=stopped) no site of the application runs. O(state=query) only reads.
  - O(site) creates O(active) when it does not exist and converges it when it does (physical path, bindings, app pool settings).
  - Waits until the sites and app pools report C(Started) or C(Stopped); IIS cmdlets return before the state changes.
  - The host's inventory is read first and the changes are planned on the controller; nothing is touched when the plan is impossible
    (missing site without O(site), a binding held by a running site that is not the application's).
options:
  app:
    description:
      - Name of the application; its sites are O(app) and O(app)C(-*).
    type: str
    required: true
  state:
    description:
      - V(started) runs O(active) and stops the application's other sites, V(stopped) stops every site of the application,
        V(query) reports them without changing anything.
    type: str
    choices: [started, stopped, query]
    default: started
  active:
    description:
      - The site to run (the new site when deploying, the previous one when reverting). Required with O(state=started).
      - Must be a site of O(app).
    type: str
  keep:
    description:
      - Sites of the application that O(prune) must not remove (O(active) is always kept).
    type: list
    elements: str
    default: []
  prune:
    description:
      - Remove the application's sites, and their app pools, that are neither in O(keep) nor O(active).
    type: bool
    default: false
  prune_content:
    description:
      - With O(prune), also delete the physical folders of the removed sites.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for sites and app pools to reach their state.
    type: int
    default: 120
  site:
    description:
      - How O(active) looks; used to create it when missing and to converge it when present.
    type: dict
    suboptions:
      physical_path:
        description: Absolute Windows path of the site's content, for example C(D:\\sites\\app.example.com-3457).
        type: str
        required: true
      preload_enabled:
        description: Whether IIS preloads the site's applications when the pool starts (warm-up aid).
        type: bool
        default: true
      bindings:
        description: The site's bindings. Two bindings may not share IP, port and host header.
        type: list
        elements: dict
        required: true
        suboptions:
          protocol:
            description: V(https) or V(http).
            type: str
            choices: [http, https]
            default: https
          ip:
            description: V(*) for all addresses, or one address.
            type: str
            default: '*'
          port:
            description: TCP port; 443 for https and 80 for http when not set.
            type: int
          host_header:
            description: Host name the binding answers to; empty for any.
            type: str
            default: ''
          certificate_thumbprint:
            description: SHA-1 thumbprint of the server certificate (https only).
            type: str
          certificate_store:
            description: Certificate store holding the certificate.
            type: str
            default: My
          sni:
            description: Require Server Name Indication (needs O(site.bindings[].host_header)).
            type: bool
            default: false
      app_pool:
        description: The site's app pool; created when missing.
        type: dict
        suboptions:
          name:
            description: App pool name; defaults to the site name.
            type: str
          managed_runtime:
            description: CLR version, or an empty string for no managed code.
            type: str
            default: v4.0
          pipeline_mode:
            description: Managed pipeline mode.
            type: str
            choices: [Integrated, Classic]
            default: Integrated
          identity:
            description: Built-in identity the pool runs as.
            type: str
            choices: [ApplicationPoolIdentity, NetworkService, LocalService, LocalSystem]
            default: ApplicationPoolIdentity
          start_mode:
            description: V(AlwaysRunning) starts the worker process with the pool (warm-up aid).
            type: str
            choices: [AlwaysRunning, OnDemand]
            default: AlwaysRunning
          idle_timeout:
            description: Minutes of inactivity before the worker process stops; V(0) never.
            type: int
            default: 0
  package:
    description:
      - A release zip to install into O(site.physical_path) between stopping the application's sites and starting O(active),
        in the same module call (the rollout's deploy step is this one task).
      - The order is fixed. First the application's sites stop, and O(prune) removes all but O(keep) and O(active).
        Next the host downloads the zip, verifies O(package.checksum) and unpacks it, exactly as M(immune.canary.iis_package) does.
        Last, O(active) is created or converged and started.
      - A failure after the first step names what was done in RV(actions); no site of the application is left running then.
      - Needs O(state=started) and O(site).
    type: dict
    version_added: 0.2.0
    suboptions:
      url:
        description: http(s) URL of the zip, fetched by the host.
        type: str
        required: true
      checksum:
        description: Expected checksum of the zip, C(sha256:<64 hex digits>); checked before unpacking.
        type: str
        required: true
      headers:
        description: HTTP headers sent with the download (for example an authorization token). Never logged.
        type: dict
        default: {}
      validate_certs:
        description:
          - Whether the host validates the download server's TLS certificate.
          - Setting this to V(false) is insecure (only the checksum then protects the package) and produces a warning.
        type: bool
        default: true
      timeout:
        description: Seconds the host waits for the download server.
        type: int
        default: 300
attributes:
  action_group:
    membership: [immune.canary.winrm]
extends_documentation_fragment:
  - immune.canary.winrm
  - immune.canary.attributes
  - immune.canary.attributes.CHECK_MODE_FULL
  - immune.canary.attributes.DIFF_MODE_FULL
notes:
  - Site and app pool names are passed as data; IIS's own naming rules apply when a site is created.
  - In check mode the host is read, the plan is returned in RV(actions), and nothing is changed; RV(sites) then shows the state found.
author:
  - immune.canary contributors (@immune-canary)
"""

EXAMPLES = r"""
- name: Stop the running site (canary start)
  immune.canary.iis_site_swap:
    winrm_host: "{{ ansible_host }}"
    winrm_user: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    app: app.example.com
    state: stopped
  delegate_to: localhost
  register: stopped

- name: Create and start the new version, remove all but the previous one
  immune.canary.iis_site_swap:
    winrm_host: "{{ ansible_host }}"
    winrm_user: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    app: app.example.com
    active: app.example.com-3457
    keep: ["{{ stopped.previous_active }}"]
    prune: true
    site:
      physical_path: D:\sites\app.example.com-3457
      bindings:
        - host_header: app.example.com
          sni: true
          certificate_thumbprint: "{{ app_cert_thumbprint }}"
  delegate_to: localhost

- name: Deploy release 3457 in one call (stop, prune, download and verify, start)
  immune.canary.iis_site_swap:
    winrm_host: "{{ ansible_host }}"
    winrm_user: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    app: app.example.com
    active: app.example.com-3457
    keep: [app.example.com-3456]
    prune: true
    site:
      physical_path: D:\sites\app.example.com-3457
      bindings:
        - host_header: app.example.com
          sni: true
          certificate_thumbprint: "{{ app_cert_thumbprint }}"
    package:
      url: "{{ release_url }}"
      checksum: "sha256:{{ release_sha256 }}"
      headers:
        Authorization: "Bearer {{ artifact_token }}"
  delegate_to: localhost

- name: Revert to the previous version
  immune.canary.iis_site_swap:
    winrm_host: "{{ ansible_host }}"
    winrm_user: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    app: app.example.com
    active: app.example.com-3456
  delegate_to: localhost
"""

RETURN = r"""
previous_active:
  description: The application's site that was running before this task (the fallback to record), or null.
  returned: always
  type: str
  sample: app.example.com-3456
active:
  description: The application's site running after this task (predicted in check mode), or null.
  returned: always
  type: str
  sample: app.example.com-3457
sites:
  description: The application's sites after this task (as found in check mode).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Site name.
      type: str
    id:
      description: IIS site id.
      type: int
    state:
      description: C(Started), C(Stopped), ...
      type: str
    app_pool:
      description: App pool name.
      type: str
    app_pool_state:
      description: App pool state.
      type: str
    physical_path:
      description: Content folder.
      type: str
    bindings:
      description: Bindings with protocol, ip, port, host_header, certificate_thumbprint, certificate_store and sni.
      type: list
      elements: dict
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [stop site app.example.com-3456, stop app pool app.example.com-3456, start site app.example.com-3457]
package:
  description: The release installed by O(package) (as M(immune.canary.iis_package) returns it).
  returned: when O(package) is set and the task got that far
  type: dict
  contains:
    changed:
      description: Whether the release was downloaded and unpacked (false when O(site.physical_path) already held it).
      type: bool
    dest:
      description: The folder the release is in.
      type: str
    checksum:
      description: Checksum of the release in the folder.
      type: str
    size:
      description: Size of the downloaded zip in bytes; null when nothing was downloaded.
      type: int
timings:
  description: Seconds spent stopping the application's sites, installing the package and starting O(active).
  returned: when O(package) is set and the task succeeded
  type: dict
  sample: {stop: 0.41, package: 2.8, start: 1.2}
elapsed:
  description: Seconds the task took.
  returned: always
  type: float
  sample: 1.42
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # noqa: E402

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError, Stopwatch, fail_from_error  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._iis import SiteSwap, client_for, package_spec, site_spec, tls_warnings  # noqa: E402
from ansible_collections.immune.canary.plugins.module_utils._winrm import (  # noqa: E402
    HAS_PYWINRM,
    PYWINRM_IMPORT_ERROR,
    WINRM_REQUIRED_IF,
    winrm_argument_spec,
)


def main():
    module = AnsibleModule(
        argument_spec=winrm_argument_spec(
            app=dict(type='str', required=True),
            state=dict(type='str', default='started', choices=['started', 'stopped', 'query']),
            active=dict(type='str'),
            keep=dict(type='list', elements='str', default=[]),
            prune=dict(type='bool', default=False),
            prune_content=dict(type='bool', default=False),
            wait_timeout=dict(type='int', default=120),
            site=dict(type='dict', options=site_spec()),
            package=dict(type='dict', options=package_spec()),
        ),
        required_if=WINRM_REQUIRED_IF + [('state', 'started', ('active',))],
        supports_check_mode=True,
    )
    if not HAS_PYWINRM:
        module.fail_json(msg=missing_required_lib('pywinrm'), exception=str(PYWINRM_IMPORT_ERROR))
    watch = Stopwatch()
    for warning in tls_warnings(dict(module.params, **(module.params['package'] or {}))):
        module.warn(warning)
    try:
        swap = SiteSwap(client_for(module.params, log=module.warn))
        run = swap.deploy if module.params['package'] else swap.run
        result = run(module.params, check_mode=module.check_mode)
    except CanaryError as exc:
        fail_from_error(module, exc, elapsed=watch.elapsed())
    diff = result.pop('diff')
    if module._diff:
        result['diff'] = diff
    module.exit_json(elapsed=watch.elapsed(), **result)


if __name__ == '__main__':
    main()
