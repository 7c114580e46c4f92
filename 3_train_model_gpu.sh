#!/usr/bin/env bash
# Stage 3 on an NVIDIA GPU (stops with a clear message when none is usable). Run again after an
# interruption, it carries on from the last checkpoint of the same settings (--resume auto).
# Extra arguments are passed on, e.g.  ./3_train_model_gpu.sh --help
exec "$(dirname "$0")/scripts/step.sh" train_model.py --epochs 200 --batch-size 64 --gpu --resume auto "$@"
