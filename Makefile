# Kiln's entry points. Every target that runs Python first makes sure .venv exists and holds
# what pyproject.toml asks for, so `make test` and `make demo` work on a fresh machine.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

# NOTE: the first interpreter that is really Python >= 3.11; a pyenv shim for a version that is
# not installed exists on PATH but fails to run, so the version check runs each candidate.
BOOT_PYTHON := $(shell for p in python3.11 python3 python; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 \
	&& { echo $$p; break; }; done)

.PHONY: venv test test-slow demo bench clean distclean

venv: $(STAMP)

# NOTE: a file target on a stamp: it reruns when pyproject.toml changes (new dependencies),
# and not on every `make test`.
$(STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
		if [ -z "$(BOOT_PYTHON)" ]; then \
			echo "error: Kiln needs Python >= 3.11 (python3.11 or python3) on PATH" >&2; \
			exit 1; \
		fi; \
		echo "creating $(VENV) with $(BOOT_PYTHON)"; \
		$(BOOT_PYTHON) -m venv $(VENV); \
	fi
	$(PY) -m pip install --quiet --upgrade pip \
		|| echo "warning: could not upgrade pip; going on with $$($(PY) -m pip --version)"
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Exit status 5 is pytest's "no tests collected": a test run that tested nothing fails.
test: $(STAMP)
	@$(PY) -m pytest -q -n 2 $(PYTEST_ARGS) tests/; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$rc

# NOTE: unlike `test`, finding no slow tests is not an error here: none may be marked yet.
test-slow: $(STAMP)
	@$(PY) -m pytest -q -n 2 -m slow $(PYTEST_ARGS) tests/; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests are marked slow"; rc=0; fi; exit $$rc

demo: $(STAMP)
	$(PY) examples/demo.py
	$(PY) examples/digits_classifier.py

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis .kiln_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# clean, and the virtual environment too
distclean: clean
	rm -rf $(VENV)
