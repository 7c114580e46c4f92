@echo off
rem Stage 4: recommendations from the trained model for an AniList user.
rem   4_recommend.bat              asks for a user name (or @name, or the profile address
rem                                https://anilist.co/user/NAME/), then runs
rem                                recommend.py --user NAME --page: the table, and the page
rem                                output\recommendations\NAME.html, opened in the browser. A user
rem                                the model did not learn from is fetched from AniList.
rem   4_recommend.bat OPTIONS...   passes them on, e.g.  --user NAME --live,
rem                                --titles "Title A" "Title B",  --all-users --out recs.csv,
rem                                --user NAME --page,  --help
setlocal
cd /d "%~dp0"
if not "%~1"=="" goto :given
set "USER_NAME="
:ask
rem A double-clicked window would close at once on an empty answer, so ask again.
set /p "USER_NAME=AniList user name or profile address (Ctrl-C quits; more: 4_recommend.bat --help): "
if not defined USER_NAME goto :ask
call "%~dp0scripts\step.bat" recommend.py --user "%USER_NAME%" --page
exit /b %ERRORLEVEL%
:given
call "%~dp0scripts\step.bat" recommend.py %*
exit /b %ERRORLEVEL%
