#!/usr/bin/env bash
# Install vitlab and what it needs on a fresh machine. `bash scripts/setup.sh` for running,
# `bash scripts/setup.sh test` adds the test dependencies (Hugging Face transformers, scipy, selenium,
# the `serve` extra, Chromium, ...). `bash scripts/setup.sh peers` makes .venv-peers: timm and transformers
# as their users have them (with torchvision, which cannot live beside the CPU torch), for the tests that
# compare vitlab with weights and outputs those libraries write.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ "${1:-}" = peers ]; then
  # torch 2.14.1 + torchvision 0.29.1 (a CUDA build, run on the CPU) lie on this disk for Python 3.11.
  [ -x .venv-peers/bin/python ] || "$PY" -m venv .venv-peers
  .venv-peers/bin/python -m pip install -q --disable-pip-version-check torch==2.14.1 torchvision==0.29.1 \
    timm==1.0.31 transformers==5.25.0 safetensors numpy pillow
  exit 0
fi
# `test`: Chromium and its WebDriver from Debian for the browser test of `vitlab serve` (skipped without them).
if [ "${1:-}" = test ] && ! command -v chromedriver >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
    || echo "setup: could not install chromium + chromium-driver; the browser test of vitlab serve will be skipped" >&2
fi
# Fashion-MNIST (IDX files under /usr/share/datasets/fashion-mnist) comes from Debian; optional elsewhere.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "setup: could not install dataset-fashion-mnist; pass --data-dir to train on your own copy" >&2
fi
# The CPU build of PyTorch; an unpinned `torch` would pull a multi-GB CUDA build here.
"$PY" -m pip install -q --disable-pip-version-check "torch==${TORCH_VERSION:-2.13.0}"
if [ "${1:-}" = test ]; then
  "$PY" -m pip install -q --disable-pip-version-check -e ".[test,serve]"
else
  "$PY" -m pip install -q --disable-pip-version-check -e .
fi
