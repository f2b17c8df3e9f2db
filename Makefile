# Plain entry points. Every target works on a fresh Debian machine that
# reaches PyPI and nothing else, with a Python 3.12 or 3.13 (pyenv's, or
# Debian 13's own): tools/find-python picks it, or names what to install.
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
COLL   := $(CURDIR)/.build/ansible_collections/immune/canary
READY  := $(VENV)/.ready
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(BIN):$(PATH)

.PHONY: setup build test static e2e-faults e2e-faults-matrix e2e-faults-rollback sanity lint ruff unit integration e2e bench demo clean faults soak package-test compat compat-in-process docs-lint changelog-lint

# .venv holds the newest supported ansible-core (requirements.txt) and
# everything the tests need. uv (from PyPI) installs the requirements in
# seconds where pip takes minutes. It compiles bytecode only when asked;
# without that (and where PYTHONDONTWRITEBYTECODE is set) every
# ansible-playbook and module run would compile its imports again.
$(READY): requirements.txt requirements-test.txt tools/find-python
	rm -rf $(VENV)
	py=$$(tools/find-python) && $$py -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q uv
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements-test.txt
	touch $@

setup: $(READY) $(VENV)/.get-pip

# ansible-test bootstraps pip with a script it downloads from a host other
# than PyPI, one per pip version (24.2 for ansible-core 2.18, 25.2 for 2.21);
# it takes a local file instead, so give it ours under the name it looks for.
$(VENV)/.get-pip: tools/get_pip.py $(READY)
	mkdir -p $(HOME)/.ansible/test/cache
	for v in 24.2 25.2 $$(sed -n "s/^ *pip='\([0-9.]*\)',\{0,1\}$$/\1/p" $(VENV)/lib/python*/site-packages/ansible_test/_internal/python_requirements.py); do \
		cp tools/get_pip.py $(HOME)/.ansible/test/cache/get_pip_$$(echo $$v | tr . _).py; done
	touch $@

build: setup
	$(BIN)/python tools/build_collection.py

# Stages run two at a time where that saves time without starving either:
# the static checks, and the packaging tests beside the runs on the other
# ansible-core releases. The unit, integration and end-to-end tests (on the
# newest ansible-core) use both cores alone.
test:
	$(MAKE) --no-print-directory -j2 --output-sync=target static
	$(MAKE) --no-print-directory unit integration e2e e2e-faults
	$(MAKE) --no-print-directory -j2 --output-sync=target package-test compat compat-in-process

static: ruff sanity lint docs-lint changelog-lint

ruff: setup
	$(BIN)/ruff check .

sanity: build
	cd $(COLL) && $(BIN)/ansible-test sanity --venv --python "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" --color no

lint: build
	@if ls roles/*/tasks >/dev/null 2>&1 || ls playbooks/*.yml >/dev/null 2>&1; then \
		$(BIN)/ansible-lint --offline roles playbooks; \
	else echo "ansible-lint: no roles or playbooks yet"; fi

# Plugin and role docs as the Ansible docsite would render them (schema, markup, RST).
docs-lint: build
	$(BIN)/antsibull-docs lint-collection-docs --plugin-docs $(COLL)

# Changelog fragments and changelogs/changelog.yaml.
changelog-lint: setup
	$(BIN)/antsibull-changelog lint
	$(BIN)/antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml

unit: build
	$(BIN)/pytest -q -n 2 --dist loadfile tests/unit

integration: build
	$(BIN)/pytest -q -n 2 --dist loadfile tests/integration

# bench_release.py draws charts with matplotlib (requirements-bench.txt).
bench: build
	@$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install --disable-pip-version-check -q -r requirements-bench.txt
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .build tests/output

# Every scenario of the rollout against the lab, the secrets audit at -vvvv
# and the Jenkins and Octopus command lines; the longest files start first.
E2E_FAULTS := tests/e2e/test_faults.py tests/e2e/test_rollback_faults.py tests/e2e/test_soak.py
e2e: build
	$(BIN)/pytest -q -n 2 --dist loadfile --durations=12 $(addprefix --ignore ,$(E2E_FAULTS)) \
		tests/e2e/test_rollout.py tests/e2e/test_guards.py tests/e2e

# The fault-matrix subset (12 cases: every fault, every phase) with a
# 2-rollout soak, beside the 6 rollback cases, which build on each other and
# so run in order in a pytest of their own (xdist's groups do not hold on
# pytest 9.2). Two labs, one per process; make -O keeps each one's output whole.
e2e-faults: build
	$(MAKE) --no-print-directory -j2 -O e2e-faults-matrix e2e-faults-rollback

e2e-faults-matrix:
	$(BIN)/pytest -q -p no:cacheprovider tests/e2e/test_faults.py tests/e2e/test_soak.py

e2e-faults-rollback:
	$(BIN)/pytest -q -p no:cacheprovider tests/e2e/test_rollback_faults.py

demo: build
	$(BIN)/python tests/lab/demo.py

# Every fault at every phase of hosts 1 and 2 (72 deploy.yml runs, two labs
# in parallel) and the 6 rollback cases; the table goes to stdout and
# tests/output/faults/table.txt.
faults: build
	rm -rf tests/output/faults
	FAULTS=full $(BIN)/pytest -q -n 2 -p no:cacheprovider tests/e2e/test_faults.py; rc=$$?; \
	FAULTS=full $(BIN)/pytest -q -p no:cacheprovider tests/e2e/test_rollback_faults.py || rc=1; \
	$(BIN)/python tests/support/faults.py tests/output/faults; exit $$rc

# 20 rollouts, good and bad builds alternating, random faults (SOAK_SEED=N replays).
soak: build
	SOAK_ROLLOUTS=$${SOAK_ROLLOUTS:-20} $(BIN)/pytest -q -s -p no:cacheprovider tests/e2e/test_soak.py

# The tarball `ansible-galaxy collection build` makes: nothing but the
# collection in it, the execution environment's build context from it, and
# the lab demo run by the collection installed from it.
package-test: build
	$(BIN)/pytest -q tests/packaging

# The other supported ansible-core releases (meta/runtime.yml): a venv each
# holding only that ansible-core (and what it pins), every other package read
# from .venv through a .pth file, so each is made in seconds.
.venv-%/.ready: requirements-compat-%.txt $(READY)
	rm -rf .venv-$*
	$(BIN)/python -m venv .venv-$*
	$(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))' > \
		"$$(.venv-$*/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/zz-main-venv.pth"
	$(BIN)/uv pip install -q --compile-bytecode --python .venv-$*/bin/python -r requirements-compat-$*.txt
	touch $@

# Every module, plugin, the role and the playbooks through the oldest
# supported ansible-core's own ansible-playbook, ansible-inventory and
# ansible-doc, and the main end-to-end scenarios against the lab (the
# rollout's and the rollback's, and the scale-out's, whose plays take hosts
# added during the run). Not repeated: the lab's own tests (no Ansible), the
# in-process tables of bad and hostile input and TLS options (the module code
# under test is the same), and the other end-to-end guards (CI's time).
COMPAT_E2E := tests/e2e/test_rollout.py tests/e2e/test_rollback.py \
	tests/e2e/test_guards.py::test_instances_a_scale_out_adds_mid_rollout_are_reported_deployed_or_ignored
COMPAT_SKIP := tests/integration/test_lab.py tests/integration/test_bad_input.py tests/integration/test_hostile_values.py tests/integration/test_tls.py
compat: build .venv-2.18/.ready
	.venv-2.18/bin/python -c 'from ansible.release import __version__; print("ansible-core", __version__)'
	.venv-2.18/bin/python -m pytest -q -n 2 --dist loadfile tests/unit
	.venv-2.18/bin/python -m pytest -q -n 2 --dist loadfile tests/integration $(addprefix --ignore ,$(COMPAT_SKIP))
	.venv-2.18/bin/python -m pytest -q -n 2 --dist loadfile $(COMPAT_E2E)

# The in-process runner on the releases between the oldest and the newest:
# which path ran, and the same results, messages and masking both ways.
compat-in-process: build .venv-2.19/.ready .venv-2.20/.ready
	for v in 2.19 2.20; do .venv-$$v/bin/python -c 'from ansible.release import __version__; print("ansible-core", __version__)'; \
		.venv-$$v/bin/python -m pytest -q tests/integration/test_in_process.py || exit 1; done
