# The README's two commands: `make demo` (install + train the default job) and `make test`.
PYTHON ?= python

.PHONY: install browser demo test lint benchmarks

install:
	bash scripts/install.sh

browser:
	bash scripts/install-browser.sh

demo: install
	rnnlab train --fraction 0.1 --run-dir runs/default --overwrite
	rnnlab predict runs/default "A moving, beautifully acted film." "Two hours I will never get back."

test: install browser
	lint-imports
	$(PYTHON) -m pytest -q

lint:
	ruff check rnnlab tests benchmarks
