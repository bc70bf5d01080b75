# Two commands: `make run` launches the app, `make test` runs the whole suite offscreen.
# Both create .venv when it is missing and install what is needed.
#
# torch: GRIDAR_TORCH picks the build.
#   auto (default)  cuda when `nvidia-smi` is found, cpu otherwise
#   cpu             torch==$(TORCH_CPU_VERSION); set TORCH_INDEX_URL to your CPU wheel index if plain PyPI
#                   would give you a CUDA build on your platform (Linux x86-64 does)
#   cuda            torch from PyPI (a CUDA build on Linux x86-64), in the range pyproject.toml allows
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GRIDAR_TORCH ?= auto
# the tested CPU version is written once, in the installer (the offline installer pins the same wheel)
TORCH_CPU_VERSION ?= $(shell sed -n 's/^TORCH_CPU_VERSION = "\([^"]*\)".*/\1/p' installer/build_installer.py)
TORCH_INDEX_URL ?=
# EXTRAS: optional extras installed beside the test tools, comma-separated: `make install EXTRAS=cluster` (Ray,
# for --cluster; the test extra already brings it for the cluster tests)
EXTRAS ?=
comma := ,
PIP_EXTRAS := test$(if $(EXTRAS),$(comma)$(EXTRAS))
STAMP := $(VENV)/.installed$(if $(EXTRAS),-$(subst $(comma),-,$(EXTRAS)))

ifeq ($(GRIDAR_TORCH),auto)
  TORCH_KIND := $(shell command -v nvidia-smi >/dev/null 2>&1 && echo cuda || echo cpu)
else
  TORCH_KIND := $(GRIDAR_TORCH)
endif
ifeq ($(TORCH_KIND),cuda)
  TORCH_REQ := "torch>=2.6,<2.15"
else
  TORCH_REQ := torch==$(TORCH_CPU_VERSION) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
endif

.PHONY: run test install bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@echo "installing torch ($(TORCH_KIND) build)"
	$(PY) -m pip install -q $(TORCH_REQ)
	$(PY) -m pip install -q -e ".[$(PIP_EXTRAS)]"
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/gridar-desktop

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/judge_speed.py

clean-venv:
	rm -rf $(VENV)
