@echo off
rem Stage 1: fetch the 3000 most popular anime from AniList into data\bert.db.
rem Extra arguments are passed on, e.g.  1_prepare_anime.bat --help
setlocal
cd /d "%~dp0"
call "%~dp0scripts\step.bat" prepare_dataset.py --count 3000 %*
exit /b %ERRORLEVEL%
