#!/usr/bin/env bash
# Stage 3 on an NVIDIA GPU (stops with a clear message when none is usable).
# Extra arguments are passed on, e.g.  ./3_train_model_gpu.sh --help
exec "$(dirname "$0")/scripts/step.sh" train_model.py --epochs 200 --batch-size 64 --gpu "$@"
