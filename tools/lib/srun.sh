#!/usr/bin/env bash
# One of the tools on a Slurm cluster, one task per GPU, shared by
# tools/slurm_train.sh and tools/slurm_test.sh:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#       bash tools/lib/srun.sh SCRIPT PARTITION JOB_NAME [SCRIPT's arguments]
set -x
TOOLS=$(cd "$(dirname "$0")/.." && pwd)
SCRIPT=$1
PARTITION=$2
JOB_NAME=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

# SRUN_ARGS is split into words on purpose (several srun options).
# shellcheck disable=SC2086
PYTHONPATH="$TOOLS/..":$PYTHONPATH \
exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="${CPUS_PER_TASK:-5}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} \
    "${PYTHON:-python}" -u "$TOOLS/$SCRIPT" "${@:4}" --launcher=slurm
