# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Elasticsearch / OpenSearch connection: argument spec, client, errors.

One client for Elasticsearch 7.10+, 8.x, 9.x and OpenSearch 1.x/2.x with the
one installed ``elasticsearch`` package. The high-level client cannot do
that: its API methods (and ``Elasticsearch.perform_request``) insist on the
``X-Elastic-Product`` response header that OpenSearch and old 7.x never send,
and it sends ``compatible-with=<client major>`` media types that a server of
another major rejects. So this layer drives ``elastic_transport.Transport``
(the client's own transport: node pool, fail-over, bounded retries) directly:

1. ``GET /`` with plain ``application/json``, no product check;
2. read ``version.number`` / ``version.distribution``;
3. send every later request with the media type that server accepts.

SigV4 (Amazon OpenSearch Service, service ``es`` or ``aoss``) signs every
request with ``botocore.auth.SigV4Auth`` inside a node class, so retries and
fail-over re-sign with fresh credentials.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import warnings
from urllib.parse import quote, urlsplit

from ansible_collections.immune.canary.plugins.module_utils._common import CanaryError

# Only the transport: importing the elasticsearch client package (and
# botocore, needed for SigV4 alone) cost about half a CPU second per module run.
# elastic_transport also imports its async HTTP libraries when they are
# installed (aiohttp is in many execution environments): another 0.3 CPU s
# for code a module never runs. They are hidden while it loads.
_ASYNC_ONLY = ('aiohttp', 'httpx')
_hidden = [name for name in _ASYNC_ONLY if name not in sys.modules]
for _name in _hidden:
    sys.modules[_name] = None  # `import aiohttp` raises ImportError, which elastic_transport expects
try:
    from elastic_transport import JsonSerializer, NdjsonSerializer, NodeConfig, TextSerializer, Transport, TransportError, Urllib3HttpNode
    HAS_ELASTICSEARCH = True
    ELASTICSEARCH_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised by ansible-test import sanity
    HAS_ELASTICSEARCH = False
    ELASTICSEARCH_IMPORT_ERROR = exc
    Urllib3HttpNode = object
finally:
    for _name in _hidden:
        if sys.modules.get(_name, False) is None:
            del sys.modules[_name]

RETRY_STATUSES = (429, 502, 503, 504)
JSON = 'application/json'
VND_JSON = 'application/vnd.elasticsearch+json; compatible-with=%d'
VND_NDJSON = 'application/vnd.elasticsearch+x-ndjson; compatible-with=%d'

ES_ARGUMENT_SPEC = dict(
    es_hosts=dict(type='list', elements='str', default=['http://localhost:9200']),
    es_api_key=dict(type='str', no_log=True),
    es_username=dict(type='str'),
    es_password=dict(type='str', no_log=True),
    es_bearer_token=dict(type='str', no_log=True),
    es_ca_certs=dict(type='path'),
    es_verify_certs=dict(type='bool', default=True),
    es_request_timeout=dict(type='float', default=30.0),
    es_max_retries=dict(type='int', default=3),
    es_aws_sigv4=dict(type='bool', default=False),
    es_aws_region=dict(type='str'),
    es_aws_service=dict(type='str', default='es', choices=['es', 'aoss']),
    es_aws_profile=dict(type='str'),
    es_aws_access_key=dict(type='str', no_log=False),
    es_aws_secret_key=dict(type='str', no_log=True),
    es_aws_session_token=dict(type='str', no_log=True),
)

ES_MUTUALLY_EXCLUSIVE = [
    ['es_api_key', 'es_username', 'es_bearer_token'],
    ['es_api_key', 'es_password', 'es_bearer_token'],
    ['es_aws_profile', 'es_aws_access_key'],
]
ES_REQUIRED_TOGETHER = [['es_username', 'es_password'], ['es_aws_access_key', 'es_aws_secret_key']]
ES_REQUIRED_IF = [['es_aws_sigv4', True, ['es_aws_region']]]


def es_argument_spec(**extra):
    """The shared Elasticsearch options plus a module's own."""
    spec = dict(ES_ARGUMENT_SPEC)
    spec.update(extra)
    return spec


def es_module_kwargs():
    """Relations between the shared options, for AnsibleModule(**kwargs)."""
    return dict(mutually_exclusive=list(ES_MUTUALLY_EXCLUSIVE), required_together=list(ES_REQUIRED_TOGETHER),
                required_if=list(ES_REQUIRED_IF))


def validate_connection(params):
    """The connection options a type check cannot judge; raises CanaryError naming the option."""
    timeout = params.get('es_request_timeout', 30.0)
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
        raise CanaryError('Invalid es_request_timeout %r: expected seconds > 0' % (timeout,))
    retries = params.get('es_max_retries', 3)
    if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 0):
        raise CanaryError('Invalid es_max_retries %r: expected a whole number >= 0' % (retries,))
    _node_configs(dict(params, es_api_key=None, es_username=None, es_bearer_token=None))


class ServerInfo:
    """What ``GET /`` said: distribution, version and the media type to use."""

    def __init__(self, distribution, number):
        self.distribution = distribution
        self.number = number
        try:
            self.major = int(str(number).split('.', 1)[0])
        except ValueError:
            self.major = 0

    @property
    def is_opensearch(self):
        return self.distribution == 'opensearch'

    @property
    def json_type(self):
        if self.is_opensearch or self.major < 8:
            return JSON
        return VND_JSON % self.major

    @property
    def ndjson_type(self):
        if self.is_opensearch or self.major < 8:
            return 'application/x-ndjson'
        return VND_NDJSON % self.major

    def as_dict(self):
        return dict(distribution=self.distribution, version=self.number)


class _SigV4Signer:
    """Signs one request with SigV4; credentials come from botocore's chain
    (or the explicit options) and are refreshed on every request."""

    def __init__(self, params):
        try:
            import botocore.exceptions  # pylint: disable=import-outside-toplevel
            import botocore.session  # pylint: disable=import-outside-toplevel
        except ImportError as exc:
            raise CanaryError('Failed to set up SigV4 signing: botocore is not installed') from exc
        session = botocore.session.Session(profile=params.get('es_aws_profile') or None)
        if params.get('es_aws_access_key'):
            session.set_credentials(params['es_aws_access_key'], params.get('es_aws_secret_key'),
                                    params.get('es_aws_session_token') or None)
        try:
            credentials = session.get_credentials()
        except botocore.exceptions.ProfileNotFound as exc:
            raise CanaryError('Failed to set up SigV4 signing: AWS profile %r not found' % params.get('es_aws_profile')) from exc
        if credentials is None:
            raise CanaryError('Failed to set up SigV4 signing: no AWS credentials found (set es_aws_access_key/es_aws_secret_key, '
                              'es_aws_profile, or the usual AWS environment variables / instance role)')
        self._credentials = credentials
        self.region = params['es_aws_region']
        self.service = params.get('es_aws_service') or 'es'

    def sign(self, method, url, body, headers):
        from botocore.auth import SigV4Auth  # pylint: disable=import-outside-toplevel
        from botocore.awsrequest import AWSRequest  # pylint: disable=import-outside-toplevel
        request = AWSRequest(method=method, url=url, data=body or b'', headers=dict(headers))
        SigV4Auth(self._credentials.get_frozen_credentials(), self.service, self.region).add_auth(request)
        return dict(request.headers.items())


class SigV4Urllib3HttpNode(Urllib3HttpNode):  # pylint: disable=too-few-public-methods
    """Urllib3 node that signs every request (the signer is set on a subclass)."""

    signer = None

    def perform_request(self, method, target, body=None, headers=None, **kwargs):  # pylint: disable=arguments-differ
        merged = dict(self._headers)
        merged.update(headers or {})
        merged.pop('authorization', None)
        # aoss requires the payload hash as a header; es accepts it.
        merged['x-amz-content-sha256'] = hashlib.sha256(body or b'').hexdigest()
        signed = self.signer.sign(method, self.base_url + target, body, merged)
        return super().perform_request(method, target, body=body, headers=signed, **kwargs)


def _node_configs(params):
    configs = []
    headers = {}
    if params.get('es_api_key'):
        headers['authorization'] = 'ApiKey ' + params['es_api_key']
    elif params.get('es_bearer_token'):
        headers['authorization'] = 'Bearer ' + params['es_bearer_token']
    elif params.get('es_username'):
        token = base64.b64encode(('%s:%s' % (params['es_username'], params.get('es_password') or '')).encode('utf-8')).decode('ascii')
        headers['authorization'] = 'Basic ' + token
    hosts = params.get('es_hosts') or []
    if not hosts:
        raise CanaryError('Invalid es_hosts: give at least one URL such as https://es.example.com:9200')
    for host in hosts:
        parts = urlsplit(host if '://' in host else 'http://' + host)
        try:
            explicit_port = parts.port
        except ValueError:
            explicit_port = 0
        if parts.scheme not in ('http', 'https') or not parts.hostname or explicit_port == 0:
            raise CanaryError('Invalid es_hosts entry %r: expected a URL such as https://es.example.com:9200 (http or https, a host, '
                              'a port from 1 to 65535)' % (parts.netloc.rsplit('@', 1)[-1] or host))
        if parts.username or parts.password:
            raise CanaryError('Invalid es_hosts entry for host %r: it must not carry credentials; use es_username/es_password or es_api_key'
                              % parts.hostname)
        port = parts.port or (443 if parts.scheme == 'https' else 9200)
        kwargs = dict(scheme=parts.scheme, host=parts.hostname, port=port, path_prefix=parts.path.rstrip('/'),
                      headers=dict(headers), request_timeout=params.get('es_request_timeout') or 30.0)
        if parts.scheme == 'https':
            kwargs['verify_certs'] = params.get('es_verify_certs', True)
            kwargs['ca_certs'] = params.get('es_ca_certs') or None
            if not kwargs['verify_certs']:
                kwargs['ssl_show_warn'] = False
        configs.append(NodeConfig(**kwargs))
    return configs


def _error_cause(response_body, status):
    """A short cause from an Elasticsearch/OpenSearch error body."""
    if isinstance(response_body, dict):
        error = response_body.get('error')
        if isinstance(error, dict):
            root = (error.get('root_cause') or [{}])[0] or {}
            kind = error.get('type') or root.get('type') or 'error'
            reason = error.get('reason') or root.get('reason') or ''
            caused = error.get('caused_by') or {}
            if caused.get('reason') and caused.get('reason') != reason:
                reason = '%s (caused by %s: %s)' % (reason, caused.get('type'), caused['reason'])
            return 'HTTP %d %s: %s' % (status, kind, reason)
        if isinstance(error, str):
            return 'HTTP %d: %s' % (status, error)
        if response_body.get('message'):
            return 'HTTP %d: %s' % (status, response_body['message'])
    if isinstance(response_body, (bytes, str)) and response_body:
        text = response_body.decode('utf-8', 'replace') if isinstance(response_body, bytes) else response_body
        return 'HTTP %d: %s' % (status, text.strip()[:300])
    return 'HTTP %d' % status


class EsClient:
    """A connection to one cluster (any of its es_hosts)."""

    def __init__(self, params, transport=None):
        if not HAS_ELASTICSEARCH:
            raise CanaryError('Failed to connect to Elasticsearch: the elasticsearch Python package is not installed')
        validate_connection(params)
        self.warnings = []
        node_class = Urllib3HttpNode
        if params.get('es_aws_sigv4'):
            others = [name for name in ('es_api_key', 'es_username', 'es_bearer_token') if params.get(name)]
            if others:
                raise CanaryError('Invalid authentication: es_aws_sigv4 signs every request itself and cannot be combined with %s'
                                  % ', '.join(others))
            signer = _SigV4Signer(params)
            node_class = type('SignedNode', (SigV4Urllib3HttpNode,), {'signer': signer})
        if params.get('es_verify_certs') is False and any(h.startswith('https') for h in params.get('es_hosts') or []):
            self.warnings.append('es_verify_certs is false: the Elasticsearch server certificate is not verified')
        serializers = {
            JSON: JsonSerializer(), 'application/x-ndjson': NdjsonSerializer(),
            'application/vnd.elasticsearch+json': JsonSerializer(), 'application/vnd.elasticsearch+x-ndjson': NdjsonSerializer(),
            'text/plain': TextSerializer(), 'text/*': TextSerializer(),
        }
        self._transport = transport or Transport(
            _node_configs(params), node_class=node_class, serializers=serializers, max_retries=params.get('es_max_retries', 3),
            retry_on_status=RETRY_STATUSES, retry_on_timeout=True, retry_backoff_base=0.25, retry_backoff_cap=2.0,
            meta_header=False, randomize_nodes_in_pool=False)
        self._info = None
        self.requests = 0

    # -- transport -----------------------------------------------------
    def _request(self, action, method, path, body=None, headers=None, ok=(200, 201)):
        """One request; returns (status, body). Raises CanaryError on failure."""
        self.requests += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                response = self._transport.perform_request(method, path, body=body, headers=headers or {'accept': JSON})
        except TransportError as exc:
            raise CanaryError('Failed to %s: %s' % (action, _transport_cause(exc))) from None
        except Exception as exc:  # serialization of an odd response, TLS setup, ...
            raise CanaryError('Failed to %s: %s: %s' % (action, type(exc).__name__, exc)) from None
        status = response.meta.status
        if status not in ok:
            raise CanaryError('Failed to %s: %s' % (action, _error_cause(response.body, status)), status=status)
        return status, response.body

    def info(self):
        """``GET /`` once: the server's distribution and version."""
        if self._info is None:
            _status, body = self._request('read server information from Elasticsearch', 'GET', '/', headers={'accept': JSON})
            if not isinstance(body, dict) or not isinstance(body.get('version'), dict):
                raise CanaryError('Failed to read server information from Elasticsearch: GET / did not answer with a version')
            version = body['version']
            self._info = ServerInfo(version.get('distribution') or 'elasticsearch', version.get('number') or '0')
        return self._info

    def _headers(self, ndjson=False):
        info = self.info()
        content = info.ndjson_type if ndjson else info.json_type
        return {'accept': info.json_type, 'content-type': content}

    # -- API ---------------------------------------------------------------
    def search(self, index, body):
        """``POST /<index>/_search``; returns the response body."""
        _status, response = self._request('search index %s' % index, 'POST', '/%s/_search' % quote_index(index),
                                          body=body, headers=self._headers())
        return response

    def count(self, index, body):
        _status, response = self._request('count documents in index %s' % index, 'POST', '/%s/_count' % quote_index(index),
                                          body=body, headers=self._headers())
        return response.get('count')

    def create_document(self, index, doc_id, document):
        """Create with id; returns True when created, False when the id exists."""
        action = 'write event %s to index %s' % (doc_id, index)
        status, _body = self._request(action, 'PUT', '/%s/_create/%s' % (quote_index(index), quote(str(doc_id), safe='')),
                                      body=document, headers=self._headers(), ok=(200, 201, 409))
        return status != 409

    def index_document(self, index, document):
        """Index with a server-generated id; returns the id."""
        _status, body = self._request('write event to index %s' % index, 'POST', '/%s/_doc' % quote_index(index),
                                      body=document, headers=self._headers())
        return body.get('_id')

    def document_exists(self, index, doc_id):
        action = 'look up event %s in index %s' % (doc_id, index)
        status, _body = self._request(action, 'HEAD', '/%s/_doc/%s' % (quote_index(index), quote(str(doc_id), safe='')),
                                      headers=self._headers(), ok=(200, 404))
        return status == 200

    def get_document(self, index, doc_id, what='document'):
        """``GET /<index>/_doc/<id>``: (source, seq_no, primary_term), or None when it (or the index) does not exist."""
        status, body = self._request('read %s %s from index %s' % (what, doc_id, index), 'GET', _doc_path(index, '_doc', doc_id),
                                     headers=self._headers(), ok=(200, 404))
        if status == 404 or not isinstance(body, dict) or not body.get('found', True):
            return None
        return body.get('_source'), body.get('_seq_no'), body.get('_primary_term')

    def put_document(self, index, doc_id, document, create=False, if_seq_no=None, if_primary_term=None, what='document'):
        """Create (``create=True``) or overwrite, optionally only if the document is still at (seq_no, primary_term).

        Returns True when written, False on a version conflict (the id exists, or someone wrote it since).
        """
        path = _doc_path(index, '_create' if create else '_doc', doc_id)
        if if_seq_no is not None:
            path += '?if_seq_no=%d&if_primary_term=%d' % (int(if_seq_no), int(if_primary_term))
        status, _body = self._request('write %s %s to index %s' % (what, doc_id, index), 'PUT', path, body=document,
                                      headers=self._headers(), ok=(200, 201, 409))
        return status != 409

    def delete_document(self, index, doc_id, if_seq_no=None, if_primary_term=None, what='document'):
        """Returns ``deleted``, ``not_found`` or ``conflict`` (someone wrote it since)."""
        path = _doc_path(index, '_doc', doc_id)
        if if_seq_no is not None:
            path += '?if_seq_no=%d&if_primary_term=%d' % (int(if_seq_no), int(if_primary_term))
        status, _body = self._request('delete %s %s from index %s' % (what, doc_id, index), 'DELETE', path,
                                      headers=self._headers(), ok=(200, 404, 409))
        return {200: 'deleted', 404: 'not_found'}.get(status, 'conflict')

    def close(self):
        try:
            self._transport.close()
        except Exception:  # pylint: disable=broad-except
            pass


def _doc_path(index, kind, doc_id):
    return '/%s/%s/%s' % (quote_index(index), kind, quote(str(doc_id), safe=''))


def quote_index(index):
    """Index names (and patterns, comma lists) for a URL path."""
    return quote(index, safe=',*')


def _transport_cause(exc):
    message = getattr(exc, 'message', None) or str(exc)
    errors = getattr(exc, 'errors', ()) or ()
    text = '%s: %s' % (type(exc).__name__, message)
    if errors:
        text += ' (after %d attempts)' % (len(errors) + 1)
    return text


def to_json(value):
    """Canonical JSON for results and diffs."""
    return json.dumps(value, sort_keys=True, default=str)
