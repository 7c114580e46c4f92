@echo off
rem Shared by the step batch files: runs one project script with .venv's Python, says clearly
rem when it failed, and waits for a key only when a batch file was double-clicked.
rem Usage (from the project folder): call scripts\step.bat SCRIPT.py [ARGS...]
setlocal
set "PY=%~dp0..\.venv\Scripts\python.exe"
set "PAUSE_AT_END="
for %%a in (%cmdcmdline%) do if /i "%%~a"=="/c" set "PAUSE_AT_END=1"
if defined BERT4REC_NO_PAUSE set "PAUSE_AT_END="
if not exist "%PY%" (
    echo [ERROR] The Python environment .venv is missing. Run setup.bat first.
    set "RC=1"
    goto :done
)
rem Unicode titles must print on any console code page.
set "PYTHONUTF8=1"
set "PYTHONIOENCODING=utf-8"
"%PY%" %*
set "RC=%ERRORLEVEL%"
if not "%RC%"=="0" echo [ERROR] %~1 stopped with exit code %RC%. Read the message above.
:done
if defined PAUSE_AT_END pause
exit /b %RC%
