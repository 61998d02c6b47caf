# SPDX-License-Identifier: GPL-2.0-only
# The developer loop.  `make demo` and `make test` each build what they need
# (a .venv, the compiled engine) from nothing but Python 3.11 and gcc.
PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV        := .venv
PY          := $(VENV)/bin/python
INSTALLED   := $(VENV)/.lgcore-installed
SOURCES     := $(wildcard lgcore/*.pyx lgcore/*.pxd include/lgcore/*.h) setup.py
PYTEST_ARGS ?=
FUZZ_SECONDS ?= 60

.PHONY: all build demo test bench annotate asan fuzz quickstart clean

all: build

$(PY):
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(INSTALLED): pyproject.toml setup.py | $(PY)
	$(PY) -m pip install -q "setuptools>=77" "Cython>=3.1,<4" wheel
	$(PY) -m pip install -q --no-build-isolation -e ".[test]"
	touch $@

# Rebuild the extensions in place whenever a .pyx, .pxd or header changed.
build: $(INSTALLED)
	$(PY) setup.py -q build_ext --inplace

demo: build
	$(PY) -m lgcore.launcher

quickstart: build
	$(PY) examples/quickstart.py

test: build
	$(PY) -m pytest $(PYTEST_ARGS)

# Full benchmark run: writes bench/results/summary.{json,md} and the ratio chart.
bench: build
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) bench/run_all.py $(BENCH_ARGS)

# Extension and C original under AddressSanitizer + UBSan, fuzz and
# differential suites run with the sanitizer runtime preloaded.
asan: $(INSTALLED)
	./tools/asan.sh

# Coverage-guided fuzzing against the C original: make fuzz FUZZ_SECONDS=600
fuzz: build
	$(PY) -m fuzz.run --seconds $(FUZZ_SECONDS)

annotate: $(INSTALLED)
	LGCORE_ANNOTATE=1 $(PY) setup.py -q build_ext --inplace --force
	@echo "annotate reports: lgcore/*.html"

clean:
	rm -rf build lgcore/*.c lgcore/*.so lgcore/*.html
