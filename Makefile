# Two commands: `make run` launches the app, `make test` runs the whole suite offscreen.
# Both create .venv when it is missing and install what is needed.
#
# torch: GRIDAR_TORCH picks the build.
#   auto (default)  cuda when `nvidia-smi` is found, cpu otherwise
#   cpu             torch==$(TORCH_CPU_VERSION); set TORCH_INDEX_URL to your CPU wheel index if plain PyPI
#                   would give you a CUDA build on your platform (Linux x86-64 does)
#   cuda            torch from PyPI (a CUDA build on Linux x86-64), in the range pyproject.toml allows
#
# torchvision (a Qwen2.5-VL judge's processor wants it) is installed right after torch, from the same place, as the
# release paired with the installed torch (torch 2.X.Y -> torchvision 0.(X+15).Y; 2.13.0 -> 0.28.0, the rule in
# gridar_desktop/engine/judges.py): cpu -> from TORCH_INDEX_URL when set (the CPU index serves the +cpu build;
# PyPI's Linux wheel is built for CUDA torch and does not load beside the CPU one), cuda -> from PyPI, as torch.
# It is then imported beside torch: one that does not load is removed again with a warning (a broken torchvision
# breaks transformers' image processors; without one, Qwen2-VL-class judges still load through their PIL image
# processor). GRIDAR_TORCHVISION=no skips it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GRIDAR_TORCH ?= auto
# the tested CPU version is written once, in the installer (the offline installer pins the same wheel)
TORCH_CPU_VERSION ?= $(shell sed -n 's/^TORCH_CPU_VERSION = "\([^"]*\)".*/\1/p' installer/build_installer.py)
TORCH_INDEX_URL ?=
GRIDAR_TORCHVISION ?= yes
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
  TORCH_INDEX :=
else
  TORCH_REQ := torch==$(TORCH_CPU_VERSION) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
  TORCH_INDEX := $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
endif

# the torchvision release paired with the installed torch, and what is said when the one installed does not load
TORCHVISION_PAIR := import torch; from gridar_desktop.engine.judges import matching_torchvision as m; \
	print(m(torch.__version__) or '')
TORCHVISION_BROKEN := warning: the torchvision installed does not load beside this torch (a build for another \
	torch), so it was removed; for the matching build set TORCH_INDEX_URL to your torch build's index (CPU: \
	https://download.pytorch.org/whl/cpu) and run make clean-venv install

.PHONY: run test install bench clean-venv

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@echo "installing torch ($(TORCH_KIND) build)"
	$(PY) -m pip install -q $(TORCH_REQ)
ifneq ($(GRIDAR_TORCHVISION),no)
	@tv=$$($(PY) -c "$(TORCHVISION_PAIR)"); echo "installing torchvision $$tv (the release paired with torch)"; \
	$(PY) -m pip install -q --no-deps "torchvision$${tv:+==$$tv}" $(TORCH_INDEX) \
		|| echo "warning: no torchvision $$tv wheel found; Qwen2-VL-class judges load without it"
endif
	$(PY) -m pip install -q -e ".[$(PIP_EXTRAS)]"
	@$(PY) -c "import torchvision" >/dev/null 2>&1 || ! $(PY) -m pip show -q torchvision >/dev/null 2>&1 || { \
		$(PY) -m pip uninstall -q -y torchvision; echo "$(TORCHVISION_BROKEN)"; }
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
