#!/usr/bin/env bash
# Training on a Slurm cluster, one task per GPU.
#   [GPUS=8] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR \
#       [train.py options]
# GPUS_PER_NODE (8), CPUS_PER_TASK (5) and SRUN_ARGS go to srun.
exec bash "$(dirname "$0")/lib/srun.sh" train.py "$1" "$2" "$3" \
    --work-dir="$4" "${@:5}"
