#!/usr/bin/env bash
# The same as 4_recommend.sh, under a shorter name: asks for a user name when none is given.
exec "$(dirname "$0")/4_recommend.sh" "$@"
