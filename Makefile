# Plain entry points. Every target works on a fresh Debian / Python 3.11
# machine that reaches PyPI and nothing else.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
COLL   := $(CURDIR)/.build/ansible_collections/immune/canary
GET_PIP := $(HOME)/.ansible/test/cache/get_pip_24_2.py
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(BIN):$(PATH)

.PHONY: setup build test sanity lint ruff unit integration e2e bench demo clean docs-lint changelog-lint

$(VENV)/.done: requirements.txt requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-test.txt
	touch $@

setup: $(VENV)/.done $(GET_PIP)

# ansible-test bootstraps pip with a downloaded script; use a local one.
$(GET_PIP): tools/get_pip.py
	mkdir -p $(dir $@)
	cp tools/get_pip.py $@

build: setup
	$(BIN)/python tools/build_collection.py

test: ruff sanity lint docs-lint changelog-lint unit integration e2e

ruff: setup
	$(BIN)/ruff check .

sanity: build
	cd $(COLL) && $(BIN)/ansible-test sanity --venv --python 3.11 --color no

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
	$(BIN)/pytest -q tests/unit

integration: build
	$(BIN)/pytest -q -n 2 --dist loadfile tests/integration

bench: build
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .build tests/output

e2e: build
	$(BIN)/pytest -q -n 2 --dist loadfile tests/e2e

demo: build
	$(BIN)/python tests/lab/demo.py
