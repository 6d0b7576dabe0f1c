# Two commands do all the set-up on a fresh machine (Python 3.11, no GPU):
#   make demo   - create .venv/ if needed, then run the main job on its embedded default
#   make test   - create .venv/ if needed, then run the test suite
VENV    := .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt
STAMP   := $(VENV)/.installed

.PHONY: venv demo test

venv: $(STAMP)

$(STAMP): setup.py constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/unifygeo demo

test: $(STAMP)
	$(PY) -m pytest test
