# Quick start on a fresh machine: `make demo` and `make test` (and `make bench`). Each target sets itself up:
# Debian packages (apt-get when root), a virtualenv in .venv, and `pip install -e .`, which
# compiles the Cython code in ext/.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# Xvfb and the X tools the tests drive; the libraries Qt's wheels load (xcb platform included).
DEB_PACKAGES := xvfb xauth x11-utils x11-xserver-utils xdotool xterm fonts-dejavu-core \
	libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxcb-image0 libxcb-render-util0 \
	libxcb-randr0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxkbcommon-x11-0 \
	libegl1 libgl1 libfontconfig1 libdbus-1-3 shared-mime-info desktop-file-utils

.PHONY: demo test bench install system-packages clean

# The sharer and the expert's window: on this display if there is one, else on private Xvfb
# servers, leaving a screenshot in demo.png.
demo: install
	$(BIN)/python -m bench.demo $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/ra-bench codec $(BENCH_ARGS)

install: system-packages $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py $(wildcard ext/*.pyx ext/*.pxd)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

system-packages:
	@if ! command -v dpkg-query >/dev/null; then \
		command -v Xvfb >/dev/null || { echo "Xvfb is missing: install your system's Xvfb package" >&2; exit 1; }; \
		exit 0; \
	fi; \
	missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "Installing Debian packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "These Debian packages are missing; install them and run make again:" >&2; \
		echo "  sudo apt-get install" $$missing >&2; \
		exit 1; \
	fi

clean:
	rm -rf $(VENV) build *.egg-info ext/*.c engine/_native/*.so
