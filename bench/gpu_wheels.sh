#!/usr/bin/env bash
# The wheels that travel to the lent GPU machine in .whl/ (bench/gpu_check.sh installs them there
# with pip --no-index --no-deps; nothing can be downloaded on that machine). Its image has Python
# 3.12, torch 2.11, transformers 5.17 and accelerate 1.15 but no DeepSpeed, pydantic or hjson, so:
# DeepSpeed at requirements/train.txt's version (a pure-Python wheel built here: its ops are compiled
# on first use), its pure-Python needs missing there (typing-extensions too: pydantic needs a newer
# one than the image may hold), pydantic-core for CPython 3.12, and this project (sekd) itself.
# No vLLM wheel: with its CUDA libraries it is far over the 64 MiB a device call carries, so
# gpu_check's vllm part records a skip. Run here, from the repository root:
#     bash bench/gpu_wheels.sh        # then .whl/ (in .gitignore) travels with `carry: [".whl"]`
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHL=.whl
rm -rf "$WHL" && mkdir -p "$WHL"
pin() { grep -oE "^$1==[^ ]+" requirements/train.txt | head -1; }
DEEPSPEED=$(pin deepspeed)
# The pure-Python needs of deepspeed and pydantic, and pydantic-core for CPython 3.12 x86-64.
NEEDS=(hjson==3.1.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5 typing-extensions==4.16.0)
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$WHL" "${NEEDS[@]}" 2> >(grep -v '^WARNING: Location' >&2)
# DeepSpeed publishes a source distribution only; built without ops it is py3-none-any.
"$PY" -m pip wheel --quiet --no-deps -w "$WHL" "$DEEPSPEED" 2> >(grep -v '^WARNING: Location' >&2)
# The project (gpu_check.sh still puts the working tree's workflow/ first on PYTHONPATH).
had_build=0 && [ -e build ] && had_build=1
"$PY" -m pip wheel --quiet --no-deps -w "$WHL" . 2> >(grep -v '^WARNING: Location' >&2)
[ "$had_build" = 1 ] || rm -rf build  # setuptools' scratch folder, when this script made it
ls -1 "$WHL"
du -sh "$WHL"
