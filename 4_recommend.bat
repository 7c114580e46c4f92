@echo off
rem Stage 4: recommendations from the trained model for an AniList user.
rem   4_recommend.bat              asks for a user name, then runs recommend.py --user NAME
rem   4_recommend.bat OPTIONS...   passes them on, e.g.  --user NAME --live,
rem                                --titles "Title A" "Title B",  --all-users --out recs.csv,  --help
setlocal
cd /d "%~dp0"
if not "%~1"=="" goto :given
set "USER_NAME="
set /p "USER_NAME=AniList user name: "
if not defined USER_NAME (
    echo No user name given. Other ways: 4_recommend.bat --help
    exit /b 2
)
call "%~dp0scripts\step.bat" recommend.py --user "%USER_NAME%"
exit /b %ERRORLEVEL%
:given
call "%~dp0scripts\step.bat" recommend.py %*
exit /b %ERRORLEVEL%
