#!/usr/bin/env bash
# Stage 2: load the watch lists of the users in datas_user.txt (20+ anime each).
# With fewer than about 500 users it asks whether to find more public ones.
# Extra arguments are passed on, e.g.  ./2_load_users.sh --help
exec "$(dirname "$0")/scripts/step.sh" load_users.py --min-anime 20 "$@"
