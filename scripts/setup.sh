#!/usr/bin/env bash
# Install vitlab and what it needs into the project's own virtual environment, .venv (VENV=DIR for another;
# PYTHON=... for another interpreter than the python3 on PATH). A system Python that refuses pip (PEP 668,
# as Debian's) is fine: nothing is installed into it. `bash scripts/setup.sh` for running,
# `bash scripts/setup.sh test` adds the test dependencies (Hugging Face transformers, scipy, selenium,
# the `serve` extra, Chromium, ...). `bash scripts/setup.sh peers` makes .venv-peers: timm and transformers
# as their users have them (with torchvision, which cannot live beside the CPU torch), for the tests that
# compare vitlab with weights and outputs those libraries write.
# Running it again is quick: pip runs only when pyproject.toml, the mode or the checkout's place changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP=(-m pip install -q --disable-pip-version-check)

# make_venv DIR: a virtual environment from $PY; Debian splits venv's pip bootstrap (ensurepip) into its own package.
make_venv() {
  [ -x "$1/bin/python" ] && return 0
  if ! "$PY" -m venv "$1" >/dev/null 2>&1; then
    rm -rf "$1"
    local pkg
    pkg=$("$PY" -c 'import sys; print(f"python3.{sys.version_info[1]}-venv")')
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      echo "setup: '$PY -m venv' cannot bootstrap pip; installing Debian's $pkg" >&2
      (apt-get update -qq && apt-get install -y -qq "$pkg") >/dev/null
    else
      echo "setup: '$PY -m venv' does not work (no ensurepip). Install your system's venv package" \
           "(Debian/Ubuntu: sudo apt-get install $pkg), or pass PYTHON=/path/to/python3, and run this again" >&2
      exit 1
    fi
    "$PY" -m venv "$1"
  fi
}

# done_before DIR KEY: true when this exact install already succeeded in DIR (the stamp holds KEY).
stamp_key() { echo "$1 $(sha256sum pyproject.toml | cut -c1-16) $PWD"; }
done_before() { [ -f "$1/.vitlab-setup" ] && grep -qxF "$2" "$1/.vitlab-setup"; }
mark_done() { echo "$2" >> "$1/.vitlab-setup"; }

if [ "${1:-}" = peers ]; then
  # torch 2.14.1 + torchvision 0.29.1 (a CUDA build, run on the CPU) lie on this disk for Python 3.11.
  make_venv .venv-peers
  key=$(stamp_key peers)
  if ! done_before .venv-peers "$key"; then
    .venv-peers/bin/python "${PIP[@]}" torch==2.14.1 torchvision==0.29.1 \
      timm==1.0.31 transformers==5.25.0 safetensors numpy pillow
    mark_done .venv-peers "$key"
  fi
  echo "setup: .venv-peers ready (timm, transformers, torchvision) for the interop tests"
  exit 0
fi
VENV=${VENV:-.venv}
make_venv "$VENV"
# `test`: Chromium and its WebDriver from Debian for the browser tests (skipped without them).
if [ "${1:-}" = test ] && ! command -v chromedriver >/dev/null && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq chromium chromium-driver) >/dev/null 2>&1 \
    || echo "setup: could not install chromium + chromium-driver; the browser tests will be skipped" >&2
fi
# Fashion-MNIST (IDX files under /usr/share/datasets/fashion-mnist) comes from Debian; optional elsewhere.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "setup: could not install dataset-fashion-mnist; pass --data-dir to train on your own copy" >&2
fi
TORCH="torch==${TORCH_VERSION:-2.13.0}"  # the CPU build; an unpinned `torch` would pull a multi-GB CUDA build here
if [ "${1:-}" = test ]; then extras="[test,serve,docs]"; else extras=""; fi
key=$(stamp_key "$TORCH -e .$extras")
if done_before "$VENV" "$key" || { [ -z "$extras" ] && done_before "$VENV" "$(stamp_key "$TORCH -e .[test,serve,docs]")"; }; then
  echo "setup: $VENV already has vitlab$extras (nothing changed since the last set-up)"
else
  echo "setup: installing $TORCH and vitlab$extras into $VENV (a few minutes the first time)"
  "$VENV/bin/python" "${PIP[@]}" "$TORCH"
  "$VENV/bin/python" "${PIP[@]}" -e ".$extras" "$TORCH"
  mark_done "$VENV" "$key"
fi
"$VENV/bin/python" -c 'import sys, torch, vitlab; print(f"setup: {sys.argv[1]} ready: vitlab {vitlab.__version__}, torch {torch.__version__}, Python {sys.version.split()[0]}; use {sys.argv[1]}/bin/python, or . {sys.argv[1]}/bin/activate first")' "$VENV"
