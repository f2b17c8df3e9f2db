"""Mirror the checkout into .build/ansible_collections/immune/canary.

ansible-test and the Ansible collection loader need the collection to sit in
a real ``ansible_collections/<namespace>/<name>`` directory. The mirror is a
copy (ansible-test rejects symlinks), updated incrementally: changed files are
copied, files gone from the checkout are removed.
"""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEST = os.path.join(ROOT, '.build', 'ansible_collections', 'immune', 'canary')
SKIP_DIRS = {'.git', '.build', '.pytest_cache', '.ruff_cache', '__pycache__', '.lab', 'dist'}
SKIP_PATHS = {os.path.join('tests', 'output'), os.path.join('bench', 'results')}


def _wanted(rel_dir, name):
    # .venv and .venv-<ansible-core version>: the test environments
    return name not in SKIP_DIRS and not name.startswith('.venv') and os.path.join(rel_dir, name) not in SKIP_PATHS


def sync(root=ROOT, dest=DEST):
    """Copy new and changed files into dest and drop files no longer present."""
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = '' if rel_dir == '.' else rel_dir
        dirnames[:] = [d for d in dirnames if _wanted(rel_dir, d)]
        os.makedirs(os.path.join(dest, rel_dir), exist_ok=True)
        seen.add(rel_dir)
        for name in filenames:
            if name.endswith(('.pyc', '.tar.gz')):
                continue
            rel = os.path.join(rel_dir, name)
            seen.add(rel)
            src, dst = os.path.join(root, rel), os.path.join(dest, rel)
            st = os.stat(src)
            try:
                dt = os.stat(dst)
                if dt.st_mtime_ns == st.st_mtime_ns and dt.st_size == st.st_size:
                    continue
            except FileNotFoundError:
                pass
            # Atomic: test workers may sync the same mirror at once.
            tmp = '%s.tmp-%d' % (dst, os.getpid())
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)
    for dirpath, _dirnames, filenames in os.walk(dest, topdown=False):
        rel_dir = os.path.relpath(dirpath, dest)
        rel_dir = '' if rel_dir == '.' else rel_dir
        top = rel_dir.split(os.sep, maxsplit=1)[0]
        if top == '.git' or rel_dir.startswith(os.path.join('tests', 'output')):
            continue
        for name in filenames:
            rel = os.path.join(rel_dir, name)
            if rel not in seen and '__pycache__' not in rel and '.tmp-' not in name:
                os.remove(os.path.join(dest, rel))
        if rel_dir and rel_dir not in seen and '__pycache__' not in rel_dir and not os.listdir(dirpath):
            os.rmdir(dirpath)
    # The mirror lies inside the checkout's ignored .build folder, where
    # ansible-test would find the outer repository and list no files. A git
    # repository of its own makes ansible-test list the mirror's files.
    if not os.path.exists(os.path.join(dest, '.git', 'HEAD')):
        subprocess.run(['git', 'init', '-q', dest], check=True)
    return dest


if __name__ == '__main__':
    print(sync())
    sys.exit(0)
