"""tools/analysis/benchmark.py end to end on tiny inputs: every column is
printed and written (figures, not assertions on speed)."""
import importlib.util
import json
import os.path as osp
import re

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool():
    from tools.analysis import benchmark
    return benchmark


def load_peers():
    """The module of the peers (where the tests patch ``PEERS`` and
    ``peer_weights``)."""
    from tools.analysis import bench_peers
    return bench_peers


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
        '--with-cp', 'off', 'on', '--copy-mib', '8', '--json', str(path)
    ])
    out = capsys.readouterr().out
    assert re.search(rf'matmul rate \(torch.mm, 256x256, median of the '
                     rf'rounds\): fp32 {NUMBER} GFLOP/s, bf16 {NUMBER}',
                     out), out
    assert re.search(rf'copy bandwidth \(copy_ of 8 MiB, read \+ written\) '
                     rf'{NUMBER} GB/s', out), out
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
        assert re.fullmatch('[0-9]+%', cells['of matmul']), row
        ratio = r'[0-9.]+x' if cells['impl'] == 'convnext' else '-'
        assert re.fullmatch(ratio, cells['speed vs ref']), row
    assert {(r[2], r[5]) for r in rows} == {('infer', 'off'),
                                            ('train', 'off'),
                                            ('train', 'on')}
    assert {r[1] for r in rows} == {'V1'}
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved['flops']['train'] == 3 * saved['flops']['infer'] > 0
    assert all('error' not in row and row['peak_mb'] > 0
               for row in saved['rows'])
    limits = saved['machine']['limits']
    assert set(limits['matmul_gflops']) == {'fp32', 'bf16'}
    assert limits['copy_gb_per_s'] > 0 and limits['statistic'] == 'median'
    assert saved['machine']['timer'] == 'wall clock'
    for row in saved['rows']:  # each row a fraction of its precision's
        assert row['matmul_fraction'] == pytest.approx(
            row['gflops'] / limits['matmul_gflops'][row['precision']])


def test_layernorm_formulations_agree(capsys):
    result = load_tool().main([
        'layernorm', '--shape', '2', '16', '12', '20', '--iters', '1',
        '--warmup', '0', '--copy-mib', '4'
    ])
    out = capsys.readouterr().out
    assert re.search(rf'copy bandwidth \(copy_ of 4 MiB.*\): {NUMBER} GB/s',
                     out), out
    header, rows = table_rows(out)
    assert header[:5] == ['variant', 'mode', 'latency us', 'GB/s', 'of copy']
    assert all(re.fullmatch('[0-9]+%', row[4]) for row in rows), rows
    assert len(rows) == 8  # 4 formulations x (infer, train)
    assert {r['mode'] for r in result['rows']} == {'infer', 'train'}
    for row in result['rows']:  # all of them compute the same LayerNorm
        assert row['max_abs_error'] < 1e-4, row
        assert row['latency_us'] > 0 and row['gb_per_s'] > 0


def test_conv_ways_compute_the_same_conv(capsys):
    argv = ['conv', '--shape', '1', '16', '12', '20', '--out-channels', '8',
            '--iters', '1', '--warmup', '0']
    if importlib.util.find_spec('onnxruntime') is not None:
        argv.append('--onnxruntime')
    result = load_tool().main(argv)
    out = capsys.readouterr().out
    assert re.search(rf'GEMM rate .*: {NUMBER} GFLOP/s', out), out
    header, rows = table_rows(out)
    assert header == ['variant', 'ms', 'GFLOP/s', 'of GEMM rate',
                      'max rel. diff']
    names = [r['variant'] for r in result['rows']]
    assert names[:2] == ['torch NCHW', 'torch channels-last']
    assert ('onnxruntime' in names) == ('--onnxruntime' in argv)
    assert result['gflop'] == pytest.approx(2 * 8 * 12 * 20 * 16 * 9 / 1e9)
    for row in result['rows']:
        assert row['max_rel_diff'] < 1e-5, row
        assert row['ms'] > 0 and row['gemm_fraction'] > 0


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
    assert header[4:] == ['infer img/s', 'infer latency ms', 'train step s',
                          'train peak MB']
    assert rows[0][1:4] == ['convnext', '(96, 128)', '2/2']
    assert all(re.fullmatch(NUMBER, cell) for cell in rows[0][4:]), rows
    assert result['train_peak_mb'] > 0 and result['infer_img_per_s'] > 0


@pytest.mark.parametrize('argv,fragment', [
    (['model', 'configs/no_such_config.py'], 'does not exist'),
    (['backbone', '--device', 'cuda'], 'CUDA is not available'),
    (['backbone', '--iters', '0'], 'at least 1 timed iteration'),
    (['backbone', '--arch', 'tiyn'], "unknown ConvNeXt arch 'tiyn'"),
    (['backbone', '--channels-last', 'maybe'], "'maybe': use 'on' or 'off'"),
    (['model', osp.join(REPO, 'configs/toy/upernet_convnext_atto_toy.py'),
      '--batch', '1'], 'needs 2 or more images'),
    (['backbone', '--peers', 'detectron2'],
     "invalid choice: 'detectron2' (choose from 'timm', 'mmpretrain')"),
    (['model', osp.join(REPO, 'configs/toy/upernet_convnext_atto_toy.py'),
      '--peers', 'timm'], 'use --peers mmpretrain'),
])
def test_bad_arguments_say_what_to_do(argv, fragment, capsys):
    import torch
    if 'cuda' in argv and torch.cuda.is_available():
        pytest.skip('CUDA is available here')
    with pytest.raises(SystemExit) as exc:
        load_tool().main(argv)
    message = str(exc.value.code) + capsys.readouterr().err
    assert fragment in message


# ------------------------------------------------- limits and the clock
def test_limits_are_the_median_on_cpu_and_the_best_on_cuda():
    import torch
    from tools.lib.measure import limit_rates, limit_seconds
    times = [3.0, 1.0, 2.0, 5.0, 4.0]
    assert limit_seconds(times, torch.device('cpu')) == 3.0
    assert limit_seconds(times, torch.device('cuda')) == 1.0
    fake = {'mm-fp32': [2.0, 1.0, 4.0], 'mm-bf16': [0.5, 0.25, 1.0],
            'copy': [0.5, 0.25, 1.0]}
    cpu = limit_rates(dict(fake, **{'mm-onednn': [1.0]}),
                      torch.device('cpu'), matmul_size=1000, copy_bytes=10**9)
    cuda = limit_rates(fake, torch.device('cuda'), matmul_size=1000,
                       copy_bytes=10**9)
    # 2 * 1000**3 FLOPs; the copy reads and writes 1 GB
    assert cpu['matmul_gflops'] == {'fp32': 1.0, 'bf16': 4.0}
    assert cpu['onednn_fp32_matmul_gflops'] == 2.0
    assert cpu['copy_gb_per_s'] == 4.0 and cpu['statistic'] == 'median'
    assert cuda['matmul_gflops'] == {'fp32': 2.0, 'bf16': 8.0}
    assert cuda['onednn_fp32_matmul_gflops'] is None
    assert cuda['copy_gb_per_s'] == 8.0 and cuda['statistic'] == 'best'


def test_fraction_of_a_limit():
    from tools.lib.measure import fraction
    assert fraction(50.0, 200.0) == 0.25
    assert fraction(300.0, 200.0) == 1.5  # shown as is: a bad limit shows
    assert fraction(50.0, None) is None and fraction(50.0, 0.0) is None
    assert fraction(None, 200.0) is None


def test_default_limit_sizes_per_device():
    import torch
    from tools.lib.measure import default_copy_bytes, default_matmul_size
    assert default_matmul_size(torch.device('cuda')) == 8192
    assert default_matmul_size(torch.device('cpu')) == 2048
    assert default_copy_bytes(torch.device('cuda')) == 2**30
    assert default_copy_bytes(torch.device('cpu')) == 2**28


def test_cuda_is_timed_with_events_and_cpu_with_the_wall_clock():
    import torch
    from tools.lib.measure import cuda_event_times, timer_for, wall_times
    assert timer_for(torch.device('cuda:1')) is cuda_event_times
    assert timer_for(torch.device('cpu')) is wall_times


class FakeCuda:
    """torch.cuda's Event and synchronize, on the host clock: an event's
    time is when it was recorded."""

    def __init__(self):
        self.clock = 0.0
        self.syncs = []

    def Event(self, enable_timing):  # noqa: N802 (torch.cuda's name)
        assert enable_timing
        cuda = self

        class Event:
            def record(self):
                self.at = cuda.clock

            def elapsed_time(self, end):
                return (end.at - self.at) * 1e3  # ms, as CUDA's

        return Event()

    def synchronize(self, device):
        self.syncs.append(device)


def test_cuda_event_times_one_sync_per_round_rotating_order():
    import torch
    from tools.lib.measure import cuda_event_times, rotated
    cuda, calls = FakeCuda(), []

    def step(name, seconds):
        def run():
            calls.append(name)
            cuda.clock += seconds
        return run

    steps = {'a': step('a', 0.5), 'b': step('b', 0.25), 'c': step('c', 2.0)}
    device = torch.device('cuda')
    times = cuda_event_times(steps, device, iters=3, warmup=2, cuda=cuda)
    assert times == {'a': [0.5] * 3, 'b': [0.25] * 3, 'c': [2.0] * 3}
    assert cuda.syncs == [device] * 4  # after the warm-up, then per round
    assert calls[:6] == ['a', 'a', 'b', 'b', 'c', 'c']  # warm-up
    assert calls[6:] == ['a', 'b', 'c', 'b', 'c', 'a', 'c', 'a', 'b']
    assert rotated([1, 2, 3], 4) == [2, 3, 1] and rotated([], 1) == []


def test_prepare_cuda_turns_on_cudnn_benchmark():
    import types

    import torch
    benchmark = load_tool()
    backends = types.SimpleNamespace(
        cudnn=types.SimpleNamespace(benchmark=False))
    current = []
    cuda = types.SimpleNamespace(set_device=current.append)
    benchmark.prepare_cuda(torch.device('cuda:1'), backends=backends,
                           cuda=cuda)
    assert backends.cudnn.benchmark is True
    assert current == [torch.device('cuda:1')]
    # torch.cuda.set_device refuses a device without an index
    benchmark.prepare_cuda(torch.device('cuda'), backends=backends,
                           cuda=cuda)
    assert current == [torch.device('cuda:1')]


def test_cuda_header_names_the_settings():
    from tools.lib.measure import describe_machine
    line = describe_machine(dict(
        name='NVIDIA H100 80GB HBM3', device='cuda', threads=16,
        torch='2.11.0+cu130', timer='CUDA events', cuda='13.0', cudnn=91900,
        cudnn_benchmark=True, tf32_matmul=False, tf32_cudnn=True))
    assert line == (
        'NVIDIA H100 80GB HBM3 (cuda, 16 threads, torch 2.11.0+cu130); '
        'CUDA 13.0, cuDNN 91900, cudnn.benchmark on, TF32 matmul off / '
        'cuDNN on; timed with CUDA events')


def test_max_relative_error():
    import torch
    from tools.lib.measure import max_relative_error
    expected = torch.tensor([[1.0, -4.0], [2.0, 0.0]])
    assert max_relative_error(expected, expected) == 0
    assert max_relative_error(expected + 0.5, expected) == 0.125
    with pytest.raises(ValueError, match='shapes differ'):
        max_relative_error(expected, expected[0])


# ---------------------------------------------------------------- peers
def fake_peer(output_norms=True, scale=1.0, module='torch'):
    """A peer built from the reference formulation (official names):
    with or without its output norms, its output scaled by ``scale``."""
    import torch
    from tools.lib.reference import ReferenceConvNeXt

    class Peer(ReferenceConvNeXt):
        def __init__(self, arch, with_cp, version):
            assert version == 1
            super().__init__(arch, with_cp=with_cp)
            if not output_norms:
                for i in range(4):
                    setattr(self, f'norm{i}', torch.nn.Identity())

        def forward(self, x):
            return tuple(f * scale for f in super().forward(x))

    return load_peers().Peer(module, Peer, output_norms, 'a fake peer')


PEER_ARGS = ['backbone', '--arch', 'atto', '--shape', '32', '32', '--batch',
             '1', '--iters', '1', '--warmup', '0', '--modes', 'infer',
             '--impls', 'convnext', '--matmul-size', '64', '--copy-mib',
             '1']


def test_peers_that_agree_are_timed_one_that_differs_is_refused(
        monkeypatch, capsys):
    monkeypatch.setattr(load_peers(), 'PEERS', {
        'same': fake_peer(),
        'no_norms': fake_peer(output_norms=False),
        'differs': fake_peer(scale=1.01),
        'absent': fake_peer(module='no_such_module_here'),
    })
    result = load_tool().main(PEER_ARGS + ['--peers', 'same', 'no_norms',
                                           'differs', 'absent'])
    out = capsys.readouterr().out
    peers = {peer['peer']: peer for peer in result['peers']}
    assert peers['same']['status'] == peers['no_norms']['status'] == 'ok'
    for name in ('same', 'no_norms'):
        assert max(peers[name]['max_relative_errors']) < 1e-4, peers[name]
    assert 'output LayerNorms' in peers['no_norms']['note']
    assert peers['differs']['status'] == 'refused'
    assert 1e-3 < max(peers['differs']['max_relative_errors']) < 2e-2
    assert peers['absent']['status'] == 'unavailable'
    assert re.search(r'peer differs refused: its ConvNeXt-atto features '
                     r'differ .*max relative error [0-9.e-]+ > 1e-04',
                     out), out
    assert "peer absent not importable: ModuleNotFoundError" in out
    header, rows = table_rows(out)
    assert [row[0] for row in rows] == ['convnext', 'same', 'no_norms']
    assert all(re.fullmatch(NUMBER, row[header.index('img/s')])
               for row in rows)


def test_peer_whose_weights_do_not_fit_is_refused(monkeypatch):
    import torch
    peers = load_peers()
    monkeypatch.setattr(peers, 'PEERS', {'same': fake_peer()})
    real = peers.peer_weights

    def wrong_shape(model):
        weights = real(model)
        weights['stages.0.0.pwconv1.weight'] = torch.zeros(3, 3)
        return weights

    monkeypatch.setattr(peers, 'peer_weights', wrong_shape)
    peer = peers.check_peer('same', 'atto', (32, 32), torch.device('cpu'))
    assert peer['status'] == 'refused'
    assert 'do not fit ConvNeXt-atto' in peer['note'], peer


@pytest.mark.parametrize('name', ['timm', 'mmpretrain'])
@pytest.mark.parametrize('version', [1, 2])
def test_real_peer_agrees_and_is_refused_when_its_weights_differ(
        name, version, monkeypatch):
    import torch
    peers = load_peers()
    reason = peers.peer_unavailable(name)
    if reason:
        pytest.skip(reason)
    device = torch.device('cpu')
    peer = peers.check_peer(name, 'atto', (64, 64), device, version)
    assert peer['status'] == 'ok', peer['note']
    assert len(peer['max_relative_errors']) == 4
    assert max(peer['max_relative_errors']) < 1e-5
    real = peers.peer_weights

    def perturbed(model):  # one stage-2 weight off by 5%
        weights = real(model)
        weights['stages.2.1.dwconv.weight'] = \
            weights['stages.2.1.dwconv.weight'] * 1.05
        return weights

    monkeypatch.setattr(peers, 'peer_weights', perturbed)
    peer = peers.check_peer(name, 'atto', (64, 64), device, version)
    assert peer['status'] == 'refused', peer['note']
    errors = peer['max_relative_errors']
    assert errors[0] < 1e-5 and errors[1] < 1e-5 and errors[2] > 1e-4


def test_model_peer_config_swaps_backbone_and_constructor():
    from mmengine.config import Config

    from tools.analysis.bench_model import mmpretrain_peer_cfg
    for config, decay_type in (
            ('configs/toy/mask_rcnn_convnext_atto_toy.py', 'layer_wise'),
            ('configs/upernet_convnext_t_512.py', 'stage_wise')):
        cfg = Config.fromfile(osp.join(REPO, config))
        peer = mmpretrain_peer_cfg(cfg)
        backbone = peer.model.backbone
        assert backbone.type == 'mmpretrain.ConvNeXt'
        assert backbone.arch == cfg.model.backbone.arch
        assert backbone.gap_before_final_norm is False
        assert backbone.out_indices == (0, 1, 2, 3)
        assert backbone.drop_path_rate == cfg.model.backbone.drop_path_rate
        optim = peer.optim_wrapper
        assert optim.constructor == 'LearningRateDecayOptimizerConstructor'
        assert optim.paramwise_cfg.decay_type == decay_type
        assert optim.paramwise_cfg.decay_rate == \
            cfg.optim_wrapper.paramwise_cfg.decay_rate
        assert optim.paramwise_cfg.num_layers in (5, 6)
        assert cfg.model.backbone.type == 'ConvNeXt'  # the original kept


def test_model_with_mmpretrain_peer(capsys):
    reason = load_peers().peer_unavailable('mmpretrain')
    if reason:
        pytest.skip(reason)
    result = load_tool().main([
        'model', osp.join(REPO, 'configs/toy/upernet_convnext_atto_toy.py'),
        '--shape', '64', '64', '--batch', '2', '--iters', '1', '--warmup',
        '0', '--peers', 'mmpretrain'
    ])
    header, rows = table_rows(capsys.readouterr().out)
    assert [row[1] for row in rows] == ['convnext', 'mmpretrain']
    peer, = result['peers']
    assert peer['peer'] == 'mmpretrain' and peer['status'] == 'ok', peer
    assert max(peer['max_relative_errors']) < 1e-5
    assert peer['train_step_s'] > 0 and peer['infer_img_per_s'] > 0


def test_cuda_limit_steps_are_the_large_ones():
    """Built as on CUDA (no oneDNN step, one matmul per precision, the copy)
    on the meta device, which runs them without memory or arithmetic."""
    import torch
    from tools.lib.measure import limit_steps
    device = torch.device('meta')
    steps = limit_steps(device, dict(fp32=torch.float32, bf16=torch.bfloat16,
                                     fp16=torch.float16), 8192, 2**30)
    assert list(steps) == ['mm-fp32', 'mm-bf16', 'mm-fp16', 'copy']
    assert steps['mm-fp16']().shape == (8192, 8192)
    assert steps['mm-fp16']().dtype == torch.float16
    assert steps['copy']().numel() * 4 == 2**30


def test_backbone_v1_and_v2_in_the_same_rounds(capsys):
    result = load_tool().main([
        'backbone', '--arch', 'atto', '--versions', '1', '2', '--shape',
        '32', '32', '--batch', '1', '--iters', '1', '--warmup', '0',
        '--modes', 'infer', 'train', '--matmul-size', '64', '--copy-mib', '1'
    ])
    out = capsys.readouterr().out
    assert 'ConvNeXt-atto, ConvNeXtV2-atto, input 1x3x32x32' in out
    header, rows = table_rows(out)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (impl, version, mode) for mode in ('infer', 'train')
        for version in ('V1', 'V2') for impl in ('convnext', 'reference')]
    for row in result['rows']:
        assert 'error' not in row, row
        if row['impl'] == 'convnext':  # its twin is the same version's
            assert row['speed_vs_ref'] > 0


def test_v2_preset_that_v2_lacks_is_an_error(capsys):
    with pytest.raises(SystemExit) as exc:
        load_tool().main(['backbone', '--arch', 'small', '--versions', '2'])
    assert 'small' in str(exc.value.code) and 'tiny' in str(exc.value.code)


def test_profile_model_sums_both_runtimes_by_op(capsys, tmp_path,
                                                monkeypatch):
    pytest.importorskip('onnxruntime')
    from tools.analysis import profile_model
    monkeypatch.chdir(tmp_path)  # nothing may be written here
    config = osp.join(REPO, 'configs', 'toy', 'upernet_convnext_atto_toy.py')
    profile_model.main([config, '64', '64', '--top', '3'])
    out = capsys.readouterr().out
    assert re.search(r'PyTorch exact, tensor path .*: [0-9]+ ms', out), out
    assert re.search(r'onnxruntime, the exported graphs .*: [0-9]+ ms', out)
    assert 'Conv ' in out and 'convolution' in out
    assert list(tmp_path.iterdir()) == []
