#!/usr/bin/env bash
# Testing on a Slurm cluster, one task per GPU.
#   [GPUS=8] bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT \
#       [test.py options]
# GPUS_PER_NODE (8), CPUS_PER_TASK (5) and SRUN_ARGS go to srun.
exec bash "$(dirname "$0")/lib/srun.sh" test.py "$1" "$2" "$3" "$4" "${@:5}"
