"""The backbone benchmark prints its table row (figures, not assertions on
speed)."""
import os.path as osp
import re
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_benchmark_prints_a_row():
    out = subprocess.run(
        [sys.executable,
         osp.join(REPO, 'tools', 'analysis', 'benchmark_backbone.py'),
         '--arch', 'atto', '--shape', '64', '96', '--batch', '2', '--iters',
         '1', '--warmup', '1', '--train', '--with-cp'],
        check=True, capture_output=True, text=True).stdout
    row = out.strip().splitlines()[-1]
    assert re.match(r'\| atto \| train \| with_cp \| cpu .* \| 64x96 \| 2 \| '
                    r'[0-9.]+ \| -?[0-9]+ \|$', row), out
