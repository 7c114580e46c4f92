#!/usr/bin/env bash
# One command: stages 1, 2 and 3 in order, stopping at the first failure.
#   ./run_all.sh          real AniList data (about 2 min + 4 min per 50 users + training)
#   ./run_all.sh --demo   the whole pipeline against the local AniList simulator (no network);
#                         demo.py's options may follow (./run_all.sh --demo --epochs 5)
# Run again after an interruption, each stage carries on where it stopped (training from its
# last checkpoint of the same settings).
cd "$(dirname "$0")" || exit 1
if [ "${1:-}" = "--demo" ]; then
    exec ./scripts/step.sh demo.py "${@:2}"
fi
if [ "$#" -gt 0 ]; then
    echo "[ERROR] run_all takes no options but --demo (demo.py's options may follow it)." >&2
    echo "        To give a stage options, run it alone, e.g. ./3_train_model.sh --epochs 50" >&2
    exit 2
fi
fail() {
    echo >&2
    echo "[ERROR] run_all stopped: a stage failed (see above). Fix the cause and run it again;" >&2
    echo "        finished work is kept and each stage carries on where it stopped." >&2
    exit 1
}
./1_prepare_anime.sh || fail
./2_load_users.sh || fail
./3_train_model.sh || fail
echo
echo "All stages finished. The model is in output/models, the plots in output/plots."
echo "Recommendations: ./4_recommend.sh"
