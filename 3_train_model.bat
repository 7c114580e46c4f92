@echo off
rem Stage 3: train BERT4Rec (200 epochs; uses a GPU when one is usable). Run again after an
rem interruption, it carries on from the last checkpoint of the same settings (--resume auto).
rem Extra arguments are passed on, e.g.  3_train_model.bat --help
setlocal
cd /d "%~dp0"
call "%~dp0scripts\step.bat" train_model.py --epochs 200 --batch-size 64 --resume auto %*
exit /b %ERRORLEVEL%
