# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the autoscaling_group module inside the Ansible worker (see plugin_utils/_in_process.py)."""

from __future__ import annotations

from ansible_collections.immune.canary.plugins.modules import autoscaling_group
from ansible_collections.immune.canary.plugins.plugin_utils._in_process import InProcessModule


class ActionModule(InProcessModule):
    MODULE = autoscaling_group
    REQUIRES = ('boto3', 'botocore')
