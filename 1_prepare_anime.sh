#!/usr/bin/env bash
# Stage 1: fetch the 3000 most popular anime from AniList into data/bert.db.
# Extra arguments are passed on, e.g.  ./1_prepare_anime.sh --help
exec "$(dirname "$0")/scripts/step.sh" prepare_dataset.py --count 3000 "$@"
