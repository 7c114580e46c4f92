#!/usr/bin/env bash
# The whole pipeline offline, in a few minutes: stages 1-3 against the local AniList simulator
# (synthetic titles and users, no network), into output/ (output/demo/ when output/ holds a model
# trained on real data). Options are passed on to demo.py, e.g.  ./demo.sh --epochs 5
exec "$(dirname "$0")/scripts/step.sh" demo.py "$@"
