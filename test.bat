@echo off
rem The test suite with the project's own environment (after setup.bat --dev). Arguments go to
rem pytest: test.bat tests\test_db.py -x
setlocal
cd /d "%~dp0"
if not exist ".venv\Scripts\python.exe" goto :nosetup
".venv\Scripts\python.exe" -c "import pytest, xdist" >nul 2>&1 || goto :nosetup
".venv\Scripts\python.exe" -m pytest -q %*
exit /b %ERRORLEVEL%
:nosetup
echo [ERROR] .venv has no test tools. Run setup.bat --dev first.
exit /b 1
