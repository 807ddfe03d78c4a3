#!/usr/bin/env bash
# Distributed testing with torchrun, one process per GPU (or per CPU slot
# on a machine without CUDA).
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
exec bash "$(dirname "$0")/lib/torchrun.sh" test.py "$3" "$1" "$2" "${@:4}"
