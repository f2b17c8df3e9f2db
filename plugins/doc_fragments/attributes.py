# Copyright: immune.canary contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Every module of the collection runs on the controller.
    DOCUMENTATION = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/immune.canary.<group>) in C(module_defaults) to set the shared options once.
    support: full
  platform:
    description: Runs on the Ansible controller (use C(delegate_to=localhost)); it reaches the remote systems over the network.
    support: full
    platforms: posix
"""

    CHECK_MODE_FULL = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
"""

    CHECK_MODE_READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode; it only reads, so check mode changes nothing in its behaviour.
    support: full
  diff_mode:
    description: Reads only; there is never a difference to show.
    support: none
"""

    DIFF_MODE_FULL = r"""
options: {}
attributes:
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
"""
