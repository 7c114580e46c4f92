@echo off
rem Stage 3 on an NVIDIA GPU (stops with a clear message when none is usable). Run again after
rem an interruption, it carries on from the last checkpoint of the same settings (--resume auto).
rem Extra arguments are passed on, e.g.  3_train_model_gpu.bat --help
setlocal
cd /d "%~dp0"
call "%~dp0scripts\step.bat" train_model.py --epochs 200 --batch-size 64 --gpu --resume auto %*
exit /b %ERRORLEVEL%
