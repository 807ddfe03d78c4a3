#!/usr/bin/env bash
# The C++ compiler tools/install.sh builds mmcv's CPU ops with (as CXX):
# every argument passed unchanged to ${CXX_REAL:-c++}, except
# - -g: Python's build flags ask for debug info, which doubles the compile
#   time of each op file (measured on 2 cores: 59 s vs 28 s of CPU for
#   ball_query.cpp against torch's headers) and nobody debugs mmcv's ops
#   from this wheel;
# - -std=c++14 / -std=c++17, raised to MMCV_CXX_STD when it is set:
#   torch >= 2.14's headers need C++20 ("C++20 or later compatible compiler
#   is required to use ATen") while mmcv's setup.py (2.1.0 and onedl-mmcv
#   2.3.6) puts -std=c++17 last on every compile line, and the last wins.
args=()
for arg in "$@"; do
  case $arg in
    -g) ;;
    -std=c++14 | -std=c++17) args+=("-std=${MMCV_CXX_STD:-${arg#-std=}}") ;;
    *) args+=("$arg") ;;
  esac
done
exec "${CXX_REAL:-c++}" "${args[@]}"
