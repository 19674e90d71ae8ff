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

# NOTE: Python 3.12 for `make test-py312`: python3.12 on PATH if it runs (a pyenv shim for a
# version that is not selected does not), else the newest pyenv 3.12 (pyenv keeps every
# installed version under $PYENV_ROOT/versions whether or not it is selected).
VENV312  := .venv312
PY312    := $(VENV312)/bin/python
STAMP312 := $(VENV312)/.installed
PY312_TESTS ?= tests/frontend
BOOT_PYTHON312 := $(shell for p in python3.12 \
	$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*/bin/python3.12 2>/dev/null \
	| sort -rV); do \
	$$p -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1 \
	&& { echo $$p; break; }; done)

.PHONY: venv venv312 test test-py312 test-slow test-gpu demo bench clean distclean

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

# The frontend tests (PY312_TESTS) on Python 3.12, in their own .venv312 built like .venv.
venv312: $(STAMP312)

$(STAMP312): pyproject.toml
	@if [ ! -x $(PY312) ]; then \
		if [ -z "$(BOOT_PYTHON312)" ]; then \
			echo "error: test-py312 needs Python 3.12 (python3.12 on PATH, or pyenv's" \
			     "$${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.12*)" >&2; \
			exit 1; \
		fi; \
		echo "creating $(VENV312) with $(BOOT_PYTHON312)"; \
		$(BOOT_PYTHON312) -m venv $(VENV312); \
	fi
	$(PY312) -m pip install --quiet --upgrade pip \
		|| echo "warning: could not upgrade pip; going on with $$($(PY312) -m pip --version)"
	$(PY312) -m pip install --quiet -e '.[test]'
	@touch $(STAMP312)

test-py312: $(STAMP312)
	@$(PY312) --version
	@$(PY312) -m pytest -q -n 2 $(PYTEST_ARGS) $(PY312_TESTS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$rc

# NOTE: unlike `test`, finding no slow tests is not an error here: none may be marked yet.
test-slow: $(STAMP)
	@$(PY) -m pytest -q -n 2 -m slow $(PYTEST_ARGS) tests/; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "no tests are marked slow"; rc=0; fi; exit $$rc

# The GPU checks (tests/gpu) and the W1 bandwidth print, on a machine with an NVIDIA GPU. No
# venv: a lent GPU machine brings its own Python (PYTHON=..., default python3); the script
# installs Kiln there and brings the MLIR bindings from .gpu/kiln-deps.tar.xz when present.
test-gpu:
	bash tests/gpu/device_check.sh

demo: $(STAMP)
	$(PY) examples/demo.py
	$(PY) examples/digits_classifier.py

bench: $(STAMP)
	$(PY) bench/run_all.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis .kiln_cache
	find . -path ./$(VENV) -prune -o -path ./$(VENV312) -prune -o -name __pycache__ -type d \
		-prune -exec rm -rf {} +

# clean, and the virtual environments too
distclean: clean
	rm -rf $(VENV) $(VENV312)
