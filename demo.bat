@echo off
rem The whole pipeline offline, in a few minutes: stages 1-3 against the local AniList simulator
rem (synthetic titles and users, no network), into output\ (output\demo\ when output\ holds a
rem model trained on real data). Options are passed on to demo.py, e.g.  demo.bat --epochs 5
setlocal
cd /d "%~dp0"
call "%~dp0scripts\step.bat" demo.py %*
exit /b %ERRORLEVEL%
