#!/usr/bin/env bash
# The same as 4_recommend.sh (the name issue 5 gives it): asks for a user name when none is given.
exec "$(dirname "$0")/4_recommend.sh" "$@"
