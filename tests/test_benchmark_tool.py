"""tools/analysis/benchmark.py end to end on tiny inputs: every column is
printed and written (figures, not assertions on speed)."""
import json
import os.path as osp
import re

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool():
    from tools.analysis import benchmark
    return benchmark


NUMBER = r'[0-9]+(\.[0-9]+)?'


def table_rows(out: str):
    lines = [line for line in out.splitlines() if line.startswith('|')]
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    rows = [[c.strip() for c in line.strip('|').split('|')]
            for line in lines[2:]]
    return header, rows


def test_backbone_every_option_and_column(tmp_path, capsys):
    path = tmp_path / 'bench.json'
    result = load_tool().main([
        'backbone', '--arch', 'atto', '--shape', '64', '96', '--batch', '2',
        '--iters', '1', '--warmup', '0', '--matmul-size', '256',
        '--precisions', 'fp32', 'bf16', '--channels-last', 'on', 'off',
        '--with-cp', 'off', 'on', '--json', str(path)
    ])
    out = capsys.readouterr().out
    assert re.search(rf'matmul rate .*fp32 {NUMBER} GFLOP/s, bf16 {NUMBER}',
                     out), out
    header, rows = table_rows(out)
    for column in ('latency ms', 'img/s', 'GFLOP/s', 'of matmul', 'peak MB',
                   'speed vs ref', 'memory vs ref', 'compile', 'with_cp'):
        assert column in header
    # infer: 2 precisions x 2 layouts x 2 impls; train: x 2 with_cp too
    assert len(rows) == 8 + 16
    for row in rows:
        assert len(row) == len(header), row
        cells = dict(zip(header, row))
        for column in ('latency ms', 'img/s', 'GFLOP/s', 'peak MB'):
            assert re.fullmatch(NUMBER, cells[column]), (column, row)
        ratio = r'[0-9.]+x' if cells['impl'] == 'convnext' else '-'
        assert re.fullmatch(ratio, cells['speed vs ref']), row
    assert {(r[1], r[4]) for r in rows} == {('infer', 'off'),
                                            ('train', 'off'),
                                            ('train', 'on')}
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved['flops']['train'] == 3 * saved['flops']['infer'] > 0
    assert all('error' not in row and row['peak_mb'] > 0
               for row in saved['rows'])


def test_layernorm_formulations_agree(capsys):
    result = load_tool().main([
        'layernorm', '--shape', '2', '16', '12', '20', '--iters', '1',
        '--warmup', '0'
    ])
    header, rows = table_rows(capsys.readouterr().out)
    assert header[:3] == ['variant', 'mode', 'latency us']
    assert len(rows) == 8  # 4 formulations x (infer, train)
    assert {r['mode'] for r in result['rows']} == {'infer', 'train'}
    for row in result['rows']:  # all of them compute the same LayerNorm
        assert row['max_abs_error'] < 1e-4, row
        assert row['latency_us'] > 0 and row['gb_per_s'] > 0


@pytest.mark.parametrize('config', [
    'configs/toy/mask_rcnn_convnext_atto_toy.py',
    'configs/toy/upernet_convnext_atto_toy.py'
])
def test_whole_model_from_config(config, capsys):
    result = load_tool().main([
        'model', osp.join(REPO, config), '--shape', '96', '128', '--batch',
        '2', '--iters', '1', '--warmup', '0'
    ])
    header, rows = table_rows(capsys.readouterr().out)
    assert header[3:] == ['infer img/s', 'infer latency ms', 'train step s',
                          'train peak MB']
    assert rows[0][1:3] == ['(96, 128)', '2/2']
    assert all(re.fullmatch(NUMBER, cell) for cell in rows[0][3:]), rows
    assert result['train_peak_mb'] > 0 and result['infer_img_per_s'] > 0


@pytest.mark.parametrize('argv,fragment', [
    (['model', 'configs/no_such_config.py'], 'does not exist'),
    (['backbone', '--device', 'cuda'], 'CUDA is not available'),
    (['backbone', '--iters', '0'], 'at least 1 timed iteration'),
    (['backbone', '--arch', 'tiyn'], "unknown ConvNeXt arch 'tiyn'"),
    (['backbone', '--channels-last', 'maybe'], "'maybe': use 'on' or 'off'"),
    (['model', osp.join(REPO, 'configs/toy/upernet_convnext_atto_toy.py'),
      '--batch', '1'], 'needs 2 or more images'),
])
def test_bad_arguments_say_what_to_do(argv, fragment, capsys):
    import torch
    if 'cuda' in argv and torch.cuda.is_available():
        pytest.skip('CUDA is available here')
    with pytest.raises(SystemExit) as exc:
        load_tool().main(argv)
    message = str(exc.value.code) + capsys.readouterr().err
    assert fragment in message
