#!/usr/bin/env bash
# Distributed training with torchrun, one process per GPU (or per CPU slot
# on a machine without CUDA: gloo, fp32).
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
exec bash "$(dirname "$0")/lib/torchrun.sh" train.py "$2" "$1" "${@:3}"
