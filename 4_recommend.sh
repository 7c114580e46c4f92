#!/usr/bin/env bash
# Stage 4: recommendations from the trained model for an AniList user.
#   ./4_recommend.sh              asks for a user name (or @name, or the profile address
#                                 https://anilist.co/user/NAME/), then runs
#                                 recommend.py --user NAME --page: the table, and the page
#                                 output/recommendations/NAME.html, opened in the browser where
#                                 there is one. A user the model did not learn from is fetched
#                                 from AniList.
#   ./4_recommend.sh OPTIONS...   passes them on, e.g.  --user NAME --live,
#                                 --titles "Title A" "Title B",  --all-users --out recs.csv,
#                                 --user NAME --page,  --help
if [ "$#" -eq 0 ]; then
    read -r -p "AniList user name or profile address: " name
    if [ -z "$name" ]; then
        echo "No user name given. Other ways: ./4_recommend.sh --help" >&2
        exit 2
    fi
    exec "$(dirname "$0")/scripts/step.sh" recommend.py --user "$name" --page
fi
exec "$(dirname "$0")/scripts/step.sh" recommend.py "$@"
