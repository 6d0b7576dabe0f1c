# Two commands do all the set-up on a fresh machine (Python 3.11, no GPU):
#   make demo   - create .venv/ if needed, then run the demo on the embedded synthetic city
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
	@# ros-test: rclpy for the ROS 2 node's tests, the ROS 2 Jazzy wheels from PyPI (~255 MB,
	@# x86_64 Linux only; elsewhere those tests skip and say so)
	if [ "$$(uname -s)-$$(uname -m)" = Linux-x86_64 ]; then $(PIP) -e '.[test,ros-test]'; \
	else echo "make: no ROS 2 Jazzy wheels for $$(uname -s)-$$(uname -m): node tests will skip"; $(PIP) -e '.[test]'; fi
	@# TensorRT 10 type stubs, for mypy on backends/tensorrt_backend.py: --no-deps, because the
	@# wheel depends on tensorrt itself, which needs CUDA and is not installed here
	$(PIP) --no-deps tensorrt-stubs==10.13.0.35.1
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/unifygeo demo

test: $(STAMP)
	$(PY) -m pytest test
