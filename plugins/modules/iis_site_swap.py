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
  - O(site) creates O(active) when it does not exist and converges it when it does. A new site is a faithful copy of the site that
    runs now (bindings, applications, virtual directories, C(<location>) sections, app pool and its identity); only the names and
    the physical paths change, and what O(site) states overrides the copy.
  - Waits until the sites and app pools report C(Started) or C(Stopped); IIS cmdlets return before the state changes.
  - The host's inventory is read first and the changes are planned on the controller; nothing is touched when the plan is impossible
    (missing site without O(site), a copied path outside the release folder, a binding held by a running site that is not the
    application's).
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
      - By default a new site is a copy of the site that runs now (see O(copy)) - its bindings with their certificates and SNI flags,
        its applications and virtual directories, limits, logging, every C(<location>) section it has in C(applicationHost.config)
        (authentication, authorization, handlers, request filtering, ...) - and gets a copy of the running site's app pool with every
        setting, the identity included. Only the names and the physical paths change. What O(site) states overrides the copy.
      - With no site to copy (a first deploy, or O(copy.enabled=false)) the site is made from O(site) alone.
    type: dict
    suboptions:
      physical_path:
        description:
          - Absolute Windows path of the release folder, for example C(D:\\sites\\app.example.com-3457).
          - The copied site's applications and virtual directories move from the running site's folder into this one
            (C(D:\\sites\\app.example.com-3456\\api) becomes C(D:\\sites\\app.example.com-3457\\api)). A copied path outside the
            running site's folder is refused before the host is changed, unless it is in O(copy.shared_paths).
        type: str
        required: true
      preload_enabled:
        description:
          - Whether IIS preloads the site's applications when the pool starts (warm-up aid).
          - Not set, the copy keeps the running site's setting; with no site to copy, V(true).
        type: bool
      bindings:
        description:
          - The site's bindings, in place of the copied ones. Two bindings may not share IP, port and host header.
          - Not set or empty, the copy keeps the running site's bindings; with no site to copy, at least one binding is needed.
        type: list
        elements: dict
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
        description:
          - The site's app pool, created when missing. It is a copy of the running site's pool; what is stated here is set on top.
          - A suboption that is not set keeps the copied value; with no site to copy, the value named in its description.
        type: dict
        suboptions:
          name:
            description: App pool name; defaults to the site name.
            type: str
          managed_runtime:
            description: CLR version, or an empty string for no managed code (V(v4.0) with no site to copy).
            type: str
          pipeline_mode:
            description: Managed pipeline mode (V(Integrated) with no site to copy).
            type: str
            choices: [Integrated, Classic]
          identity:
            description:
              - The account the pool runs as. Not set, the copy keeps the running pool's identity - a built-in account, a domain account
                whose password IIS keeps encrypted (copied on the host, inside IIS's configuration system; it never passes through Ansible),
                or a group Managed Service Account. With no site to copy, V(ApplicationPoolIdentity).
              - V(specific_user) runs the pool as the domain or local account O(site.app_pool.username) (C(DOMAIN\\name), C(.\\name) or
                C(name@domain.example.com)) with O(site.app_pool.password).
              - V(gmsa) runs the pool as the group Managed Service Account O(site.app_pool.username) (C(DOMAIN\\name$)); it has no password.
            type: str
            choices: [ApplicationPoolIdentity, NetworkService, LocalService, LocalSystem, specific_user, gmsa]
          username:
            description: The account of O(site.app_pool.identity=specific_user) or O(site.app_pool.identity=gmsa).
            type: str
            version_added: 0.2.0
          password:
            description:
              - The password of O(site.app_pool.identity=specific_user). Never logged, never returned; IIS stores it encrypted.
              - The module compares it with the stored one on the host (by a keyed hash that never leaves the host), so a task that
                states the same password again changes nothing.
            type: str
            version_added: 0.2.0
          start_mode:
            description: V(AlwaysRunning) starts the worker process with the pool (warm-up aid; V(AlwaysRunning) with no site to copy).
            type: str
            choices: [AlwaysRunning, OnDemand]
          idle_timeout:
            description: Minutes of inactivity before the worker process stops; V(0) never (V(0) with no site to copy).
            type: int
      sections:
        description:
          - Settings of the new site's C(<location>) sections in C(applicationHost.config), set over the copied ones (a section the
            running site does not have is added).
          - Collections (C(<add>) entries) cannot be stated here; they come with the copy.
        type: list
        elements: dict
        version_added: 0.2.0
        suboptions:
          section:
            description: The section, for example C(system.webServer/security/authentication/windowsAuthentication).
            type: str
            required: true
          location:
            description: A path below the site, for example C(api) for C(<location path="app.example.com-3457/api">); empty for the site.
            type: str
            default: ''
          element:
            description: A child element of the section, such as C(requestLimits) of C(system.webServer/security/requestFiltering).
            type: str
            default: ''
          attributes:
            description: Attribute names and values to set (booleans are written as C(true) and C(false)).
            type: dict
            required: true
  copy:
    description:
      - Where the configuration of O(active) comes from when O(site) creates or converges it.
    type: dict
    version_added: 0.2.0
    suboptions:
      enabled:
        description:
          - Copy another site. V(false) makes a new site from O(site) alone; an existing O(active) keeps its own configuration, with what
            O(site) states set on it.
        type: bool
        default: true
      source:
        description:
          - The site to copy. By default the application's running site (O(active) itself when it runs); when none runs, O(active) if it
            exists, else the application's newest site (named in a warning).
        type: str
      shared_paths:
        description:
          - Folders outside the copied site's folder that its applications and virtual directories may keep using unchanged (shared
            uploads, a UNC share). Any other path outside that folder is refused before the host is changed.
        type: list
        elements: str
        default: []
      exclude_sections:
        description:
          - Sections of the copied site's C(<location>) tags to leave out of the copy (each one is named in a warning).
        type: list
        elements: str
        default: []
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
  - With C(--diff) the module shows which site runs before and after, and, when O(site) is set, the copied site's configuration
    against the new site's, section by section (RV(site_diff) holds the sections that differ).
  - A setting the module cannot copy (a section the host's IIS schema does not know, an attribute of a C(<location>) tag other than
    C(overrideMode), a section left out by O(copy.exclude_sections), an app pool shared with other sites) is named in a warning.
  - The configuration is read from C(applicationHost.config) and written through the C(IISAdministration) module (Windows Server
    2016 or later), one commit per site, app pool or section. Settings kept in the sites' own C(web.config) files come with the
    release's content and are not copied.
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

- name: First deploy of an app whose pool runs as a group Managed Service Account (later deploys copy it)
  immune.canary.iis_site_swap:
    winrm_host: "{{ ansible_host }}"
    winrm_user: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    app: app.example.com
    active: app.example.com-1
    site:
      physical_path: D:\sites\app.example.com-1
      bindings:
        - host_header: app.example.com
          sni: true
          certificate_thumbprint: "{{ app_cert_thumbprint }}"
      app_pool:
        identity: gmsa
        username: CORP\svc-app$
      sections:
        - section: system.webServer/security/authentication/windowsAuthentication
          attributes: {enabled: true}
        - section: system.webServer/security/authentication/anonymousAuthentication
          attributes: {enabled: false}
  delegate_to: localhost

- name: Deploy a copy of the running site whose uploads folder is shared between versions
  immune.canary.iis_site_swap:
    winrm_host: "{{ ansible_host }}"
    winrm_user: "{{ ansible_user }}"
    winrm_password: "{{ ansible_password }}"
    app: app.example.com
    active: app.example.com-3457
    site:
      physical_path: D:\sites\app.example.com-3457
    copy:
      shared_paths: ['D:\shared\uploads']
  delegate_to: localhost
  register: deployed

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
copied_from:
  description: The site whose configuration O(active) was made from (a copy), or null (no O(site), or nothing to copy).
  returned: always
  type: str
  sample: app.example.com-3456
site_diff:
  description:
    - How the configuration of O(active) differs from the site it copies, section by section; only the sections that differ.
      With nothing to copy, every section of the new site. Empty without O(site).
    - Each entry names the C(section) (C(site), C(site/application[/api]/virtualDirectory[/]), C(site/bindings/binding[https,*:443:app]),
      C(app pool/processModel), C(location /api - system.webServer/security/authentication/windowsAuthentication), ...) and holds its
      attributes C(before) and C(after) (null where a side lacks the section). Encrypted values show as C((encrypted)).
  returned: always
  type: list
  elements: dict
  sample:
    - section: site
      before: {name: app.example.com-3456, id: '4'}
      after: {name: app.example.com-3457, id: '5'}
    - section: site/application[/]/virtualDirectory[/]
      before: {path: /, physicalPath: 'D:\sites\app.example.com-3456'}
      after: {path: /, physicalPath: 'D:\sites\app.example.com-3457'}
actions:
  description: What was done (or would be done in check mode), in order.
  returned: always
  type: list
  elements: str
  sample: [create app pool app.example.com-3457 (copy of app.example.com-3456), create site app.example.com-3457 (copy of app.example.com-3456),
           stop site app.example.com-3456, stop app pool app.example.com-3456, start app pool app.example.com-3457, start site app.example.com-3457]
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
from ansible_collections.immune.canary.plugins.module_utils._iis import (  # noqa: E402
    SiteSwap,
    client_for,
    copy_spec,
    package_spec,
    site_spec,
    tls_warnings,
)
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
            copy=dict(type='dict', options=copy_spec()),
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
    for warning in result.pop('warnings'):
        module.warn(warning)
    diff = result.pop('diff')
    if module._diff:
        result['diff'] = diff
    module.exit_json(elapsed=watch.elapsed(), **result)


if __name__ == '__main__':
    main()
