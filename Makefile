# The two commands: `make demo` and `make test`. Both create .venv on a fresh machine.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
PYTHON  ?= python3

.PHONY: install demo test bench clean

install: $(STAMP)

# Reinstall only when the project metadata or the constraints change (fast no-op otherwise).
# --no-compile: pip byte-compiles every installed module (torch alone is thousands), 133 s vs 57 s
# for this install measured here; Python compiles only what is imported, on first import, which
# RUN below lets it cache even where the environment sets PYTHONDONTWRITEBYTECODE.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'setuptools<81' wheel
	$(PY) -m pip install -q --no-compile -c constraints.txt -e '.[test]'
	touch $(STAMP)

RUN := env PYTHONDONTWRITEBYTECODE=

demo: install
	$(RUN) $(VENV)/bin/speechlm demo

test: install
	$(RUN) $(VENV)/bin/pytest

bench: install
	$(RUN) $(PY) benchmarks/corpus_synth.py

clean:
	rm -rf demo-work demo-report runs
