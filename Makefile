# The README names these targets. Each one sets up what it needs on a fresh machine:
# a virtualenv in .venv with the package installed (editable), and Graphviz's `dot`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: lab test demo bench graphviz clean help

help:
	@echo "make lab    - set up and open the tour in JupyterLab"
	@echo "make test   - set up and run the whole test suite"
	@echo "make demo   - run the tour headless into build/tour.html"
	@echo "make bench  - run the benchmarks (writes benchmarks/RESULTS.md)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# One stamp per set of extras: editing pyproject.toml reinstalls.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e ".[$*]"
	@touch $@

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

# JupyterLab refuses to run as root unless told; containers and CI machines often are root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(VENV)/.installed-lab graphviz
	cd notebooks && ../$(BIN)/jupyter lab $(ALLOW_ROOT) 01_tour.ipynb

test: $(VENV)/.installed-test graphviz
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: $(VENV)/.installed-test graphviz
	@mkdir -p build
	$(BIN)/jupyter nbconvert --to html --execute notebooks/01_tour.ipynb --output-dir build --output tour.html
	@echo "wrote build/tour.html"

bench: $(VENV)/.installed-test
	$(BIN)/python -m benchmarks

clean:
	rm -rf build .pytest_cache .hypothesis
