# The two commands: `make demo` (set up, then run the end-to-end demo) and `make test`.
# Both install whatever a fresh Debian machine lacks: Debian packages, the locked Python
# environment in .venv, and the gRPC code generated from protos/.

SHELL := /bin/bash
# Debian 12 has Python 3.11, Debian 13 and Raspberry Pi OS trixie 3.13; a minimal system none yet (then
# system-deps installs Debian's python3, and PYTHON, expanded again in each recipe, finds it).
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3.13 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
# libsane-dev builds python-sane; sane-utils gives scanimage and the `test` backend;
# the WenQuanYi font lets the synthetic source draw Chinese text (and the web console's watermark);
# chromium is the browser the web console's tests drive through Playwright.
APT_PACKAGES := libsane-dev sane-utils libsane1 fonts-wqy-microhei gcc libc6-dev systemd udev chromium
# Leptonica for the pipeline bench's own test of its peer, so that test runs rather than skips: liblept5
# on Debian 12 (bookworm), libleptonica6 from Debian 13 (trixie) on.
LEPTONICA := $(shell . /etc/os-release 2>/dev/null; [ "$$VERSION_CODENAME" = bookworm ] && echo liblept5 || echo libleptonica6)
APT_PACKAGES += $(LEPTONICA)
# PostgreSQL's server for the scale-out tests (each starts a private cluster: initdb in a temporary
# directory, Unix socket only); restic for the archive's offline backups and their restore test.
APT_PACKAGES += postgresql restic
# poppler renders the cover sheets Quire prints back into images for the recognition tests (poppler-data for
# their Chinese type).
APT_PACKAGES += poppler-utils poppler-data
# gdb with glibc's debug symbols reads the allocator settings back from a running station daemon.
APT_PACKAGES += gdb libc6-dbg
# Debian's own Python needs these for venv and for building python-sane; pyenv builds have them.
APT_PACKAGES += $(shell command -v $(PYTHON) >/dev/null || echo python3)
APT_PACKAGES += $(shell $(PYTHON) -c "import ensurepip" 2>/dev/null || echo python3-venv)
APT_PACKAGES += $(shell $(PYTHON) -c "import sysconfig, os, sys; \
  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
  2>/dev/null || echo python3-dev)
PROTO_SRC := $(wildcard protos/quire/v1/*.proto)
PROTO_OUT := $(PROTO_SRC:.proto=_pb2.py) $(PROTO_SRC:.proto=_pb2_grpc.py)

.PHONY: demo test setup system-deps protos lock clean bench

demo: setup
	$(PY) -m station.demo

# The suite runs on PYTEST_WORKERS pytest-xdist workers (most tests wait on subprocesses, so more workers than
# cores pays); tests that must not run beside each other share an xdist_group (tests/conftest.py says which).
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 3
test: setup
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

setup: system-deps $(VENV)/.installed protos

protos: $(PROTO_OUT)

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "need root to install:" $$missing >&2; exit 1; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: requirements.lock pyproject.toml | system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(PROTO_OUT) &: $(PROTO_SRC) $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -I protos --python_out=protos --pyi_out=protos \
	  --grpc_python_out=protos $(PROTO_SRC)

# The image-pipeline benchmark: Quire beside Leptonica (Debian's liblept5), unpaper (Debian), jdeskew
# and deskew (PyPI, in the lock) on the same labelled pages, and on the real-scan corpus beside
# Tesseract's orientation detection (Debian's tesseract-ocr with its osd data).
# BENCH_ARGS="--pages 20 --real 30" for a quick look.
bench: setup
	@$(MAKE) --no-print-directory system-deps APT_PACKAGES="$(LEPTONICA) unpaper iproute2 tesseract-ocr tesseract-ocr-osd"
	$(PY) -m bench.pipeline $(BENCH_ARGS)

# Re-pin the environment after changing dependencies in pyproject.toml (needs uv).
lock:
	uv pip compile pyproject.toml --extra dev --extra bench --generate-hashes --universal --python-version 3.11 \
	  --quiet -o requirements.lock

clean:
	rm -rf $(VENV) $(PROTO_OUT) $(PROTO_SRC:.proto=_pb2.pyi)
