# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Elasticsearch / OpenSearch connection options shared by es_health_gate and deploy_event.
    DOCUMENTATION = r"""
options:
  es_hosts:
    description:
      - URLs of the Elasticsearch or OpenSearch nodes, for example V(https://es.example.com:9200).
      - With several URLs, a node that fails is skipped and the request goes to the next one.
      - A path in the URL is used as a prefix (for a cluster behind a reverse proxy).
      - Credentials must not be written into the URL; use O(es_api_key), O(es_username)/O(es_password) or O(es_bearer_token).
      - Elasticsearch 7.10 and later, 8.x, 9.x and OpenSearch 1.x and 2.x are supported; the server's version is read
        from C(GET /) and requests use the media type that server accepts.
    type: list
    elements: str
    default: [http://localhost:9200]
  es_api_key:
    description:
      - "Elasticsearch API key, the base64 C(encoded) form, sent as C(Authorization: ApiKey ...). Never logged."
      - Mutually exclusive with O(es_username), O(es_bearer_token) and O(es_aws_sigv4).
    type: str
  es_username:
    description:
      - User name for HTTP basic authentication; requires O(es_password).
    type: str
  es_password:
    description:
      - Password for HTTP basic authentication. Never logged.
    type: str
  es_bearer_token:
    description:
      - Bearer token (for example an Elasticsearch service account token). Never logged.
    type: str
  es_ca_certs:
    description:
      - Path to a PEM file with the CA certificates that signed the server certificate.
      - When not set, the system trust store is used.
    type: path
  es_verify_certs:
    description:
      - Whether to verify the server's TLS certificate.
      - Setting this to V(false) is insecure and produces a warning.
    type: bool
    default: true
  es_request_timeout:
    description:
      - Timeout in seconds for one HTTP request.
    type: float
    default: 30
  es_max_retries:
    description:
      - How many times a request is retried after a connection error, a timeout or HTTP 429, 502, 503 or 504,
        trying the next node of O(es_hosts) each time, with a short backoff.
    type: int
    default: 3
  es_aws_sigv4:
    description:
      - Sign every request with AWS Signature Version 4, for Amazon OpenSearch Service domains and OpenSearch Serverless.
      - Credentials come from O(es_aws_access_key)/O(es_aws_secret_key), O(es_aws_profile), or botocore's normal
        chain (environment variables, shared files, instance profile, container role).
      - Requires O(es_aws_region).
    type: bool
    default: false
  es_aws_region:
    description:
      - AWS region of the domain, for example V(eu-west-1). Required when O(es_aws_sigv4=true).
    type: str
  es_aws_service:
    description:
      - The service name in the signature, V(es) for Amazon OpenSearch Service domains, V(aoss) for OpenSearch Serverless.
    type: str
    choices: [es, aoss]
    default: es
  es_aws_profile:
    description:
      - AWS profile to take the signing credentials from. Mutually exclusive with O(es_aws_access_key).
    type: str
  es_aws_access_key:
    description:
      - AWS access key ID for signing; requires O(es_aws_secret_key).
    type: str
  es_aws_secret_key:
    description:
      - AWS secret access key for signing. Never logged.
    type: str
  es_aws_session_token:
    description:
      - AWS session token for temporary signing credentials. Never logged.
    type: str
requirements:
  - elasticsearch >= 8.11 (the Python client; its transport talks to every supported server version)
  - botocore (only for O(es_aws_sigv4=true))
notes:
  - The modules run on the controller; use C(delegate_to=localhost) (or C(run_once)) in plays that target Windows hosts.
  - No option value marked "never logged" appears in results or error messages.
"""
