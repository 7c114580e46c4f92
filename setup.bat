@echo off
rem Stage 0: find Python 3.9+, create .venv, install PyTorch (CUDA build when an NVIDIA GPU is
rem found) and requirements.txt, create data\ and output\, report whether a GPU is usable.
rem Safe to run again. Options are passed on to setup_env.py (see: setup.bat --help).
setlocal
cd /d "%~dp0"
set "PAUSE_AT_END="
for %%a in (%cmdcmdline%) do if /i "%%~a"=="/c" set "PAUSE_AT_END=1"
set "PY="
py -3 --version >nul 2>&1 && set "PY=py -3"
if not defined PY (
    python --version >nul 2>&1 && set "PY=python"
)
if not defined PY (
    echo [ERROR] Python was not found. Install Python 3.9 or newer from
    echo         https://www.python.org/downloads/ and tick "Add python.exe to PATH",
    echo         then run setup.bat again.
    set "RC=1"
    goto :done
)
%PY% setup_env.py %*
set "RC=%ERRORLEVEL%"
if not "%RC%"=="0" echo [ERROR] Setup did not finish. Read the message above.
:done
if defined PAUSE_AT_END pause
exit /b %RC%
