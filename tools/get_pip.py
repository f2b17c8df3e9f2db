"""Offline stand-in for ansible-test's pip bootstrap script.

ansible-test downloads ``get-pip.py`` to bootstrap pip in the virtual
environments it creates; that download needs a host other than PyPI. This
script does the same job with the pip wheel bundled in ``ensurepip`` and
installs the requested pip version from the package index.
"""

import ensurepip
import glob
import os
import sys


def main():
    bundled = os.path.join(os.path.dirname(ensurepip.__file__), '_bundled')
    wheels = sorted(glob.glob(os.path.join(bundled, 'pip-*.whl')))
    if not wheels:
        sys.exit('get_pip: no bundled pip wheel in %s' % bundled)
    sys.path.insert(0, wheels[-1])
    from pip._internal.cli.main import main as pip_main  # pylint: disable=import-outside-toplevel

    # get-pip's own switches are not pip options.
    args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
    sys.exit(pip_main(['install', '--upgrade', '--force-reinstall'] + args))


if __name__ == '__main__':
    main()
