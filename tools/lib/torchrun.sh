#!/usr/bin/env bash
# torchrun of one of the tools on this node, shared by tools/dist_train.sh
# and tools/dist_test.sh:
#   bash tools/lib/torchrun.sh SCRIPT NUM_PROCS [SCRIPT's arguments]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
TOOLS=$(cd "$(dirname "$0")/.." && pwd)
SCRIPT=$1
NPROC=$2

PYTHONPATH="$TOOLS/..":$PYTHONPATH \
exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$NPROC" \
    --master_port="${PORT:-29500}" \
    "$TOOLS/$SCRIPT" "${@:3}" --launcher pytorch
