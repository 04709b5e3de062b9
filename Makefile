# The README names these targets. Each one sets up what it needs on a fresh machine:
# a virtualenv in .venv with the package installed (editable), and Graphviz's `dot`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: lab test test-fast demo bench graphviz clean distclean help FORCE

help:
	@echo "make lab        - set up and open the tour in JupyterLab (options: LAB_ARGS=\"--no-browser --port 8899\")"
	@echo "make test       - set up and run the whole test suite (options: PYTEST_ARGS=...)"
	@echo "make test-fast  - the same without the tests marked slow (soaks, notebooks, browsers)"
	@echo "make demo       - run the tour headless into build/tour.html"
	@echo "make bench      - run the benchmarks into build/benchmarks/; RECORD=1 updates benchmarks/RESULTS.md"
	@echo "make clean      - remove build outputs and test caches (keeps .venv)"
	@echo "make distclean  - clean, and remove .venv too"
	@echo "PYTHON=python3.12 picks the interpreter (>= 3.11) that .venv is made with"

# --- the virtualenv ----------------------------------------------------------------
# .venv/.created stands for the venv (bin/python is a symlink whose date is the base
# interpreter's). Its recipe runs every time and rebuilds a venv that cannot serve:
# one whose Python is gone or older than 3.11 (e.g. made by a failed PYTHON=python3.10
# run), or one made by another interpreter than an explicitly given PYTHON=. A venv
# that is fine is left alone, so `make test` after `make test PYTHON=python3.12` keeps
# using 3.12. A good venv without the stamp (made by hand, or by an older Makefile) is
# adopted with an old date on the stamp, so that its installs stand.
PY_NEW_ENOUGH := import sys; sys.exit(sys.version_info < (3, 11))
PY_ID         := import sys; print(sys.base_prefix, *sys.version_info[:3])
PYTHON_GIVEN  := $(filter command line environment,$(origin PYTHON))

$(VENV)/.created: FORCE
	@reason=""; \
	if [ -d $(VENV) ]; then \
		if ! $(BIN)/python -c '$(PY_NEW_ENOUGH)' >/dev/null 2>&1; then \
			v=$$($(BIN)/python -c 'import platform; print(platform.python_version())' 2>/dev/null); \
			reason="its Python $${v:-no longer runs}$${v:+ is older than 3.11}"; \
		elif [ -n "$(PYTHON_GIVEN)" ] && \
		     [ "$$($(BIN)/python -c '$(PY_ID)')" != "$$($(PYTHON) -c '$(PY_ID)' 2>/dev/null)" ]; then \
			reason="it was made with another Python than PYTHON=$(PYTHON)"; \
		elif [ ! -e $@ ]; then \
			touch -t 197001010000 $@; exit 0; \
		else \
			exit 0; \
		fi; \
	fi; \
	if ! $(PYTHON) -c '$(PY_NEW_ENOUGH)' >/dev/null 2>&1; then \
		have=$$($(PYTHON) -c 'import platform; print("Python", platform.python_version())' 2>/dev/null || echo "not a working Python"); \
		echo "aura_nb needs Python >= 3.11, and PYTHON=$(PYTHON) is $$have." >&2; \
		for p in python3.13 python3.12 python3.11; do \
			if $$p -c '$(PY_NEW_ENOUGH)' >/dev/null 2>&1; then \
				echo "Run: make $(or $(MAKECMDGOALS),test) PYTHON=$$p" >&2; exit 1; \
			fi; \
		done; \
		echo "Install Python 3.11 or newer, then run: make $(or $(MAKECMDGOALS),test) PYTHON=/path/to/python3.11" >&2; \
		exit 1; \
	fi; \
	if [ -n "$$reason" ]; then echo "$(VENV): $$reason; rebuilding it"; rm -rf $(VENV); fi; \
	echo "creating $(VENV) with $$($(PYTHON) -c 'import sys; print(sys.executable)')"; \
	$(PYTHON) -m venv $(VENV) && \
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip && \
	touch $@

# One stamp per set of extras: editing pyproject.toml, or a new venv, reinstalls.
# setuptools warns on every editable install that a folder named like the package in
# the working directory could shadow it; here that folder *is* the package.
$(VENV)/.installed-%: pyproject.toml $(VENV)/.created
	PYTHONWARNINGS="ignore:Editable installation" \
		$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[$*]"
	@touch $@

FORCE:

graphviz:
	@if command -v dot >/dev/null 2>&1; then \
		echo "graphviz: $$(dot -V 2>&1)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "graphviz: installing the 'dot' program with apt-get"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends graphviz; \
	else \
		echo "graphviz: the 'dot' program is missing; state paths will show as DOT text until you install it:"; \
		echo "  Debian/Ubuntu: sudo apt-get install graphviz"; \
		echo "  macOS:         brew install graphviz"; \
		echo "  conda:         conda install -c conda-forge graphviz"; \
	fi

# --- the targets -------------------------------------------------------------------
# JupyterLab refuses to run as root unless told; containers and CI machines often are root.
ALLOW_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root,)
# Where no browser can be opened (Linux without a display: a server, a container, SSH),
# JupyterLab would print an error before the URL to open; tell it not to try. WSL and a
# BROWSER setting can open one without a display. LAB_ARGS comes after, so it wins.
NO_BROWSER = $(shell [ "$$(uname -s)" = Linux ] && [ -z "$$DISPLAY$$WAYLAND_DISPLAY$$BROWSER" ] \
	&& ! grep -qi microsoft /proc/version 2>/dev/null && echo --no-browser)

# The tour needs no Voila server (the test tools install it into the same .venv, and
# its server extension warns about a deprecated token setting on every start).
NO_VOILA := --ServerApp.jpserver_extensions=voila.server_extension=False

lab: $(VENV)/.installed-lab graphviz
	cd notebooks && ../$(BIN)/jupyter lab $(ALLOW_ROOT) $(NO_BROWSER) $(NO_VOILA) $(LAB_ARGS) 01_tour.ipynb

test: $(VENV)/.installed-test graphviz
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The everyday loop: everything but the tests marked slow. CI runs `make test`.
test-fast: $(VENV)/.installed-test graphviz
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

demo: $(VENV)/.installed-test graphviz
	@mkdir -p build
	$(BIN)/jupyter nbconvert --to html --execute notebooks/01_tour.ipynb --output-dir build --output tour.html
	@echo "wrote build/tour.html"

# Exits non-zero when a target is missed. RECORD=1 writes the committed results.
bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks $(if $(filter 1 yes true,$(RECORD)),--record,) $(BENCH_ARGS)

clean:
	rm -rf build .pytest_cache .hypothesis
	@echo "kept $(VENV) (the installed environment); 'make distclean' removes it too"

distclean: clean
	rm -rf $(VENV) *.egg-info
