@echo off
rem Stage 2: load the watch lists of the users in datas_user.txt (20+ anime each).
rem With fewer than about 500 users it asks whether to find more public ones.
rem Extra arguments are passed on, e.g.  2_load_users.bat --help
setlocal
cd /d "%~dp0"
call "%~dp0scripts\step.bat" load_users.py --min-anime 20 %*
exit /b %ERRORLEVEL%
