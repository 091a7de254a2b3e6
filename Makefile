# medseg: two commands do all the set-up on a fresh machine.
#   make run    create .venv if missing, install, run the main job on the bundled sample data
#   make test   the same set-up, then the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pins every Python dependency; keeps a CPU-only machine on torch 2.13.0 (see README for GPUs).
CONSTRAINTS ?= constraints.txt
STAMP := $(VENV)/.medseg-installed
# Debian packages the tests use as third-party validators and for real-browser checks;
# orthanc + orthanc-dicomweb are the real PACS of the PACS tests (started by the tests on free
# ports; `make run` does not need them).
SYSTEM_PKGS ?= dicom3tools plastimatch chromium chromium-driver poppler-utils dcmtk \
               orthanc orthanc-dicomweb
OUT ?= out

.PHONY: install run app test lint system-deps bench clean pacs-demo tools-nnunet nnunet-fixtures \
        tools-monai monai-bundle-fixture

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml $(CONSTRAINTS)
	@# torch first, so no other requirement can pull a multi-GB CUDA build on a CPU machine;
	@# an already-installed torch that satisfies the pin (e.g. a CUDA build) is kept.
	$(PY) -m pip install -q -c $(CONSTRAINTS) torch
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e ".[app,dev]"
	touch $(STAMP)

install: $(STAMP)

# Idempotent: installs only what is missing, and only when we may (root); otherwise says what.
# The orthanc package's own service (ports 8042/4242) is stopped and disabled when this
# installed it: the tests start their own Orthanc on free ports.
system-deps:
	@missing=""; for p in $(SYSTEM_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing system packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  case " $$missing " in *" orthanc "*) \
	    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then \
	      systemctl disable --now orthanc >/dev/null 2>&1 || true; fi;; esac; \
	else echo "note: system packages missing:$$missing (sudo apt-get install$$missing); tests that need them are skipped"; fi

# The main job: the headless pipeline on the bundled sample (prints each step), then the app
# on http://localhost:8501 with the sample CT open.
run: install
	$(PY) -m medseg.demo --out $(OUT)
	MEDSEG_START_SAMPLE="CT abdomen, DICOM (JPEG 2000)" $(VENV)/bin/streamlit run app/main.py \
	  --server.headless=true --browser.gatherUsageStats=false

# The Streamlit app (viewer) on http://localhost:8501
app: install
	$(VENV)/bin/streamlit run app/main.py --server.headless=true --browser.gatherUsageStats=false

test: install system-deps
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check medseg app tests bench
	$(VENV)/bin/hadolint Dockerfile

# A local Orthanc (authentication on, free ports) seeded with the bundled series, and a
# servers file for medseg, to try the PACS features (docs/pacs.md). Needs the orthanc and
# orthanc-dicomweb packages (make system-deps). Ctrl-C stops it.
pacs-demo: install
	$(PY) -m tests.pacs.orthanc --folder $(OUT)/orthanc

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(OUT) test-output .pytest_cache

# Reference tools for the foreign-model fixtures and benches (docs/models.md); medseg never
# imports them. nnunetv2 gets its own venv: torch 2.13.0 (the CPU build) goes in first and is
# pinned, so nnunetv2's chain (dynamic-network-architectures -> timm -> torchvision) keeps it.
# The torchvision that pip then picks does not import beside the CPU torch; nnunetv2's
# planning, nnUNetTrainer and nnUNetPredictor never import it. Idempotent.
TOOLS ?= .tools
NNUNET_VENV := $(TOOLS)/nnunet
NNUNET_STAMP := $(NNUNET_VENV)/.installed

$(NNUNET_STAMP):
	$(PYTHON) -m venv $(NNUNET_VENV)
	$(NNUNET_VENV)/bin/pip install -q torch==2.13.0
	echo "torch==2.13.0" > $(TOOLS)/nnunet-constraints.txt
	$(NNUNET_VENV)/bin/pip install -q -c $(TOOLS)/nnunet-constraints.txt nnunetv2==2.8.1
	touch $(NNUNET_STAMP)

tools-nnunet: $(NNUNET_STAMP)

# Re-make the committed nnU-Net fixture models and nnUNetPredictor's reference labels
# (tests/fixtures/nnunet; about an hour of CPU training, niced).
nnunet-fixtures: tools-nnunet
	nice -n 10 $(NNUNET_VENV)/bin/python tests/fixtures/nnunet/make_fixtures.py all

# MONAI's own bundle runner with what model-zoo configs need (pytorch-ignite for
# SupervisedEvaluator), pinned to medseg's MONAI/torch/nibabel; for references and benches only.
MONAI_VENV := $(TOOLS)/monai
MONAI_STAMP := $(MONAI_VENV)/.installed

$(MONAI_STAMP): $(CONSTRAINTS)
	$(PYTHON) -m venv $(MONAI_VENV)
	$(MONAI_VENV)/bin/pip install -q -c $(CONSTRAINTS) torch
	$(MONAI_VENV)/bin/pip install -q -c $(CONSTRAINTS) monai nibabel numpy pytorch-ignite
	touch $(MONAI_STAMP)

tools-monai: $(MONAI_STAMP)

# Re-make the committed MONAI bundle fixture and monai.bundle's reference labels.
monai-bundle-fixture: install tools-monai
	nice -n 10 $(PY) tests/fixtures/monai_bundle/make_bundle.py all
