@echo off
rem One click: stages 1, 2 and 3 in order, stopping at the first failure.
rem   run_all.bat          real AniList data (about 2 min + 4 min per 50 users + training)
rem   run_all.bat --demo   the whole pipeline against the local AniList simulator (no network)
setlocal
cd /d "%~dp0"
set "PAUSE_AT_END="
for %%a in (%cmdcmdline%) do if /i "%%~a"=="/c" set "PAUSE_AT_END=1"
set "BERT4REC_NO_PAUSE=1"
set "RC=0"
if /i "%~1"=="--demo" (
    call "%~dp0scripts\step.bat" demo.py
    if errorlevel 1 goto :failed
    goto :done
)
call 1_prepare_anime.bat
if errorlevel 1 goto :failed
call 2_load_users.bat
if errorlevel 1 goto :failed
call 3_train_model.bat
if errorlevel 1 goto :failed
echo.
echo All stages finished. The model is in output\models, the plots in output\plots.
echo Recommendations: 4_recommend.bat
goto :done
:failed
echo.
echo [ERROR] run_all stopped: a stage failed (see above). Fix the cause and run it again;
echo         finished work is kept and each stage carries on where it stopped.
set "RC=1"
:done
if defined PAUSE_AT_END pause
exit /b %RC%
