"""iis_package through real ansible-playbook against the WS-Management double."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest

from doubles.winrm_double import WinRMDouble
from support import servers
from support.ansible_runner import run_module

DEST = 'D:\\sites\\app.example.com-3457'


def make_zip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w') as archive:
        archive.writestr('web.config', '<configuration/>')
        archive.writestr('index.html', 'v3457')
    return buf.getvalue()


RELEASE = make_zip()
RELEASE_SHA = 'sha256:' + hashlib.sha256(RELEASE).hexdigest()
TOKEN = 'Bearer artifact-T0ken'


@pytest.fixture
def double():
    with WinRMDouble() as d:
        d.add_host('web1')
        d.running = d.listen('web1')
        yield d


@pytest.fixture
def artifacts():
    class Handler(servers.QuietHandler):
        def do_GET(self):  # noqa: N802 - stdlib name
            ok = self.headers.get('Authorization') == TOKEN
            body = RELEASE if ok else b''
            self.send_response(200 if ok else 403)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with servers.serving(Handler) as running:
        yield running


def run(double, check=False, **args):
    conn = dict(winrm_host=double.running.host, winrm_port=double.running.port, winrm_scheme='http', winrm_transport='basic',
                winrm_user=double.user, winrm_password=double.password)
    result = run_module('iis_package', dict(conn, **args), check=check)
    text = result.stdout + result.stderr
    assert double.password not in text and 'artifact-T0ken' not in text
    return result


def test_check_real_idempotent_then_absent(double, artifacts):
    host = double.hosts['web1']
    args = dict(url=artifacts.url + '/releases/3457.zip', checksum=RELEASE_SHA, dest=DEST, headers={'Authorization': TOKEN})
    check = run(double, check=True, **args)
    assert check.result['changed'] is True
    assert host.content == {}
    real = run(double, **args)
    assert real.result['changed'] is True
    assert (real.result['dest'], real.result['checksum'], real.result['size']) == (DEST, RELEASE_SHA, len(RELEASE))
    assert 'elapsed' in real.result
    assert host.content[DEST]['files'] == ['index.html', 'web.config']
    assert run(double, check=True, **args).result['changed'] is False
    again = run(double, **args)
    assert again.result['changed'] is False
    assert again.result['size'] == len(RELEASE)
    gone = run(double, checksum=RELEASE_SHA, dest=DEST, state='absent')
    assert gone.result['changed'] is True
    assert run(double, checksum=RELEASE_SHA, dest=DEST, state='absent').result['changed'] is False


def test_checksum_mismatch_fails_and_keeps_dest(double, artifacts):
    host = double.hosts['web1']
    host.content[DEST] = {'files': ['old.html'], 'marker': {'checksum': 'sha256:' + '1' * 64, 'size': 10}}
    wrong = 'sha256:' + 'e' * 64
    result = run(double, url=artifacts.url + '/r.zip', checksum=wrong, dest=DEST, headers={'Authorization': TOKEN})
    assert result.failed
    assert result.result['msg'] == ('Failed to install package D:\\sites\\app.example.com-3457 on %s: checksum mismatch: expected %s, '
                                    'downloaded file has %s' % (double.running.host, wrong, RELEASE_SHA))
    assert host.content[DEST] == {'files': ['old.html'], 'marker': {'checksum': 'sha256:' + '1' * 64, 'size': 10}}


def test_bad_checksum_format_is_rejected_before_contacting_the_host(double):
    result = run(double, url='http://127.0.0.1:1/x.zip', checksum='abc', dest=DEST)
    assert result.result['msg'] == "Invalid checksum 'abc': use sha256:<64 hex digits>"
    assert double.requests == 0
