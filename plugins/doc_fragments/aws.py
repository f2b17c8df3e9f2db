# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # AWS connection options; the names and environment variables are the
    # ones amazon.aws uses, so existing module_defaults and credentials work.
    DOCUMENTATION = r"""
options:
  region:
    description:
      - The AWS region to use.
      - When not set, the E(AWS_REGION) or E(AWS_DEFAULT_REGION) environment variable, then the profile's region, is used.
    type: str
    aliases: [aws_region, ec2_region]
  profile:
    description:
      - A named AWS profile from the shared credentials or config file.
      - May not be used together with O(access_key), O(secret_key) or O(session_token).
      - The E(AWS_PROFILE) environment variable is used when not set.
    type: str
    aliases: [aws_profile]
  access_key:
    description:
      - AWS access key ID.
      - When not set, the E(AWS_ACCESS_KEY_ID) environment variable, then boto3's normal credential chain
        (shared files, instance profile, container role) is used.
    type: str
    aliases: [aws_access_key_id, aws_access_key, ec2_access_key]
  secret_key:
    description:
      - AWS secret access key. Never logged.
      - When not set, the E(AWS_SECRET_ACCESS_KEY) environment variable, then boto3's normal credential chain is used.
    type: str
    aliases: [aws_secret_access_key, aws_secret_key, ec2_secret_key]
  session_token:
    description:
      - AWS STS session token for temporary credentials. Never logged.
      - The E(AWS_SESSION_TOKEN) environment variable is used when not set.
    type: str
    aliases: [aws_session_token, security_token]
  endpoint_url:
    description:
      - URL of a non-default endpoint for the AWS service, for example a VPC endpoint or a local test server.
      - The E(AWS_URL) environment variable is used when not set.
    type: str
    aliases: [aws_endpoint_url]
  validate_certs:
    description:
      - Whether to validate the TLS certificate of the AWS endpoint. Turning it off is reported as a warning.
    type: bool
    default: true
  aws_ca_bundle:
    description:
      - Path to a CA bundle used to validate the AWS endpoint's certificate.
      - The E(AWS_CA_BUNDLE) environment variable is used when not set.
    type: path
requirements:
  - boto3 >= 1.34.0
  - botocore >= 1.34.0
notes:
  - Credentials are looked up as boto3 does when no option is given.
  - Throttled and transient API errors are retried by botocore in C(standard) mode with a bounded number of attempts.
"""

    # The same options for controller-side plugins (inventory): these read
    # their environment variables through the option definitions.
    PLUGINS = r"""
options:
  region:
    description:
      - The AWS region to use.
      - When not set, the profile's region is used.
    type: str
    aliases: [aws_region, ec2_region]
    env:
      - name: AWS_REGION
      - name: AWS_DEFAULT_REGION
      - name: EC2_REGION
  profile:
    description:
      - A named AWS profile from the shared credentials or config file.
      - May not be used together with O(access_key), O(secret_key) or O(session_token).
    type: str
    aliases: [aws_profile]
    env:
      - name: AWS_PROFILE
      - name: AWS_DEFAULT_PROFILE
  access_key:
    description:
      - AWS access key ID.
      - When not set, boto3's normal credential chain (shared files, instance profile, container role) is used.
    type: str
    aliases: [aws_access_key_id, aws_access_key, ec2_access_key]
    env:
      - name: AWS_ACCESS_KEY_ID
      - name: AWS_ACCESS_KEY
      - name: EC2_ACCESS_KEY
  secret_key:
    description:
      - AWS secret access key. Never logged nor shown in any message.
      - When not set, boto3's normal credential chain is used.
    type: str
    secret: true
    aliases: [aws_secret_access_key, aws_secret_key, ec2_secret_key]
    env:
      - name: AWS_SECRET_ACCESS_KEY
      - name: AWS_SECRET_KEY
      - name: EC2_SECRET_KEY
  session_token:
    description:
      - AWS STS session token for temporary credentials. Never logged nor shown in any message.
    type: str
    secret: true
    aliases: [aws_session_token, security_token]
    env:
      - name: AWS_SESSION_TOKEN
      - name: AWS_SECURITY_TOKEN
      - name: EC2_SECURITY_TOKEN
  endpoint_url:
    description:
      - URL of a non-default endpoint for the AWS services, for example a VPC endpoint or a local test server.
    type: str
    aliases: [aws_endpoint_url]
    env:
      - name: AWS_URL
      - name: EC2_URL
  validate_certs:
    description:
      - Whether to validate the TLS certificate of the AWS endpoint.
    type: bool
    default: true
  aws_ca_bundle:
    description:
      - Path to a CA bundle used to validate the AWS endpoint's certificate.
    type: path
    env:
      - name: AWS_CA_BUNDLE
requirements:
  - boto3 >= 1.34.0
  - botocore >= 1.34.0
notes:
  - Credentials are looked up as boto3 does when no option is given.
  - Throttled and transient API errors are retried by botocore in C(standard) mode with a bounded number of attempts.
"""
