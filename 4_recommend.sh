#!/usr/bin/env bash
# Stage 4: recommendations from the trained model for an AniList user.
#   ./4_recommend.sh              asks for a user name, then runs recommend.py --user NAME
#   ./4_recommend.sh OPTIONS...   passes them on, e.g.  --user NAME --live,
#                                 --titles "Title A" "Title B",  --all-users --out recs.csv,  --help
if [ "$#" -eq 0 ]; then
    read -r -p "AniList user name: " name
    if [ -z "$name" ]; then
        echo "No user name given. Other ways: ./4_recommend.sh --help" >&2
        exit 2
    fi
    exec "$(dirname "$0")/scripts/step.sh" recommend.py --user "$name"
fi
exec "$(dirname "$0")/scripts/step.sh" recommend.py "$@"
