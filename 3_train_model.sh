#!/usr/bin/env bash
# Stage 3: train BERT4Rec (200 epochs; uses a GPU when one is usable). Run again after an
# interruption, it carries on from the last checkpoint of the same settings (--resume auto).
# Extra arguments are passed on, e.g.  ./3_train_model.sh --help
exec "$(dirname "$0")/scripts/step.sh" train_model.py --epochs 200 --batch-size 64 --resume auto "$@"
