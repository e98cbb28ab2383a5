# The two commands: `make demo` and `make test`. Both create .venv on a fresh machine.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
PYTHON  ?= python3

.PHONY: install demo test bench clean

install: $(STAMP)

# Reinstall only when the project metadata or the constraints change (fast no-op otherwise).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools<81' wheel
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/speechlm demo

test: install
	$(VENV)/bin/pytest

bench: install
	$(PY) benchmarks/corpus_synth.py

clean:
	rm -rf demo-work demo-report runs
