@echo off
rem One click: stages 1, 2 and 3 in order, stopping at the first failure.
rem   run_all.bat          real AniList data (about 2 min + 4 min per 50 users + training)
rem   run_all.bat --demo   the whole pipeline against the local AniList simulator (no network);
rem                        demo.py's options may follow (run_all.bat --demo --epochs 5)
rem Run again after an interruption, each stage carries on where it stopped (training from its
rem last checkpoint of the same settings).
setlocal
cd /d "%~dp0"
set "PAUSE_AT_END="
for %%a in (%cmdcmdline%) do if /i "%%~a"=="/c" set "PAUSE_AT_END=1"
set "BERT4REC_NO_PAUSE=1"
set "RC=0"
if /i "%~1"=="--demo" goto :demo
if not "%~1"=="" goto :usage
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
:demo
rem Everything after --demo goes on to demo.py, as typed.
set "DEMO_ARGS="
:next_demo_arg
rem /1 keeps %0, the path of this file
shift /1
if "%~1"=="" goto :run_demo
set DEMO_ARGS=%DEMO_ARGS% %1
goto :next_demo_arg
:run_demo
call "%~dp0scripts\step.bat" demo.py %DEMO_ARGS%
if errorlevel 1 goto :failed
goto :done
:usage
echo [ERROR] run_all takes no options but --demo (demo.py's options may follow it).
echo         To give a stage options, run it alone, e.g. 3_train_model.bat --epochs 50
set "RC=2"
goto :done
:failed
echo.
echo [ERROR] run_all stopped: a stage failed (see above). Fix the cause and run it again;
echo         finished work is kept and each stage carries on where it stopped.
set "RC=1"
:done
if defined PAUSE_AT_END pause
exit /b %RC%
