"""Lab release packages: a zip whose manifest.json says how the app behaves.

``error_pattern`` says how the ``error_rate`` share of 500s falls (see
app_site.py). ``host_latency_ms`` maps a host name to its own latency, for a release that
is slow on one server only (a host-specific configuration problem).

The WinRM double unpacks a package into a site's content folder; when the
site starts, the lab's app server reads the manifest from that folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

MANIFEST = 'manifest.json'
ERROR_PATTERNS = ('even', 'random')
DEFAULTS = {'error_rate': 0.0, 'error_pattern': 'even', 'latency_ms': 5.0, 'cold_start_s': 3.0, 'health_status': 200, 'host_latency_ms': {}}


def manifest_for(version, **behaviour):
    unknown = set(behaviour) - set(DEFAULTS)
    if unknown:
        raise ValueError('unknown package behaviour: %s' % ', '.join(sorted(unknown)))
    manifest = dict(DEFAULTS, version=str(version))
    manifest.update({k: v for k, v in behaviour.items() if v is not None})
    if not 0 <= float(manifest['error_rate']) <= 1:
        raise ValueError('error_rate must be between 0 and 1')
    if manifest['error_pattern'] not in ERROR_PATTERNS:
        raise ValueError('error_pattern must be one of: %s' % ', '.join(ERROR_PATTERNS))
    return manifest


def build_package(directory, version, **behaviour):
    """Write ``app-<version>.zip`` into directory; return (path, 'sha256:<hex>', manifest)."""
    manifest = manifest_for(version, **behaviour)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        zf.writestr('web.config', '<configuration><!-- lab app %s --></configuration>\n' % manifest['version'])
        zf.writestr('bin/app.txt', 'immune.canary lab application, version %s\n' % manifest['version'])
    data = buf.getvalue()
    path = Path(directory) / ('app-%s.zip' % manifest['version'])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, 'sha256:' + hashlib.sha256(data).hexdigest(), manifest


def read_manifest(content_dir):
    """The manifest of an unpacked package, or the defaults for an empty folder."""
    path = Path(content_dir) / MANIFEST
    if not path.exists():
        return manifest_for('unknown')
    return json.loads(path.read_text(encoding='utf-8'))
