"""Checkpoint layouts: each foreign layout round-trips to the same features;
bad files give errors that name the file and the problem."""
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.logging import MMLogger

from convnext_backbone import ConvNeXt, convert_to_convnext
from convnext_backbone.checkpoint import CheckpointError
from helpers import MICRO, captured_logs, randomize_

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def trunk(sd):
    return {k: v for k, v in sd.items() if not re.match(r'norm\d\.', k)}


def to_official(sd):
    out = dict(trunk(sd))
    out['norm.weight'] = torch.ones(64)
    out['norm.bias'] = torch.zeros(64)
    out['head.weight'] = torch.randn(1000, 64)
    out['head.bias'] = torch.zeros(1000)
    return {'model': out}


def to_mmpretrain(sd):
    out = {}
    for k, v in trunk(sd).items():
        k = k.replace('.dwconv.', '.depthwise_conv.').replace(
            '.pwconv1.', '.pointwise_conv1.').replace('.pwconv2.',
                                                      '.pointwise_conv2.')
        out['backbone.' + k] = v
    # classifier norm on pooled features + linear head: not dense norms
    out['backbone.norm3.weight'] = torch.full((64, ), 7.0)
    out['backbone.norm3.bias'] = torch.full((64, ), 7.0)
    out['head.fc.weight'] = torch.randn(1000, 64)
    out['head.fc.bias'] = torch.zeros(1000)
    return {'meta': {'mmpretrain_version': '1.2.0'}, 'state_dict': out}


def to_timm(sd):
    out = {}
    for k, v in trunk(sd).items():
        m = re.match(r'downsample_layers\.(\d)\.(\d)\.(.*)', k)
        if m:
            i, j, rest = m.groups()
            k = f'stem.{j}.{rest}' if i == '0' else \
                f'stages.{i}.downsample.{j}.{rest}'
        else:
            s, b, rest = re.match(r'stages\.(\d)\.(\d+)\.(.*)', k).groups()
            rest = rest.replace('dwconv', 'conv_dw').replace(
                'pwconv1', 'mlp.fc1').replace('pwconv2', 'mlp.fc2')
            k = f'stages.{s}.blocks.{b}.{rest}'
        out[k] = v
    out['head.norm.weight'] = torch.ones(64)
    out['head.norm.bias'] = torch.zeros(64)
    out['head.fc.weight'] = torch.randn(1000, 64)
    out['head.fc.bias'] = torch.zeros(1000)
    return out


def to_detector(sd):
    out = {'backbone.' + k: v for k, v in sd.items()}
    out['neck.lateral_convs.0.conv.weight'] = torch.randn(4, 8, 1, 1)
    out['roi_head.bbox_head.fc_cls.weight'] = torch.randn(3, 4)
    return {'meta': {'epoch': 3}, 'state_dict': out}


def to_ddp(sd):
    return {'state_dict': {'module.' + k: v for k, v in sd.items()}}


LAYOUTS = dict(official=(to_official, False), mmpretrain=(to_mmpretrain,
                                                           False),
               timm=(to_timm, False), detector=(to_detector, True),
               ddp=(to_ddp, True))


@pytest.fixture
def source():
    return randomize_(ConvNeXt(MICRO), seed=1).eval()


@pytest.mark.parametrize('layout', list(LAYOUTS))
def test_layout_round_trip(layout, source, tmp_path):
    convert, keeps_out_norms = LAYOUTS[layout]
    path = str(tmp_path / f'{layout}.pth')
    torch.save(convert(source.state_dict()), path)

    target = ConvNeXt(MICRO, init_cfg=dict(type='Pretrained', checkpoint=path))
    target.init_weights()
    target.eval()
    src_sd, tgt_sd = source.state_dict(), target.state_dict()
    for k in trunk(src_sd):
        assert torch.equal(src_sd[k], tgt_sd[k]), k
    for i in range(4):  # dense norms: loaded, or fresh ones/zeros
        w = tgt_sd[f'norm{i}.weight']
        expected = src_sd[f'norm{i}.weight'] if keeps_out_norms else \
            torch.ones_like(w)
        assert torch.equal(w, expected)
    if not keeps_out_norms:  # same features once the fresh norms agree
        target.load_state_dict(
            {k: v for k, v in src_sd.items() if k.startswith('norm')},
            strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(source(x), target(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_convert_is_pure_and_drops_heads(source):
    sd = to_mmpretrain(source.state_dict())['state_dict']
    before = dict(sd)
    out = convert_to_convnext(sd)
    assert sd == before  # input untouched
    assert not any(k.startswith(('head', 'norm')) for k in out)
    assert set(out) == set(trunk(source.state_dict()))


def test_summary_is_logged_once(source, tmp_path):
    from convnext_backbone.checkpoint import load_convnext_checkpoint
    path = str(tmp_path / 'official.pth')
    torch.save(to_official(source.state_dict()), path)
    logger = MMLogger.get_instance('convnext_ckpt_test')
    target = ConvNeXt(MICRO)
    with captured_logs(logger) as logs:
        loaded, missing, unexpected = load_convnext_checkpoint(
            target, path, logger=logger)
    lines = [m for m in logs.messages() if 'ConvNeXt: loaded' in m]
    assert len(lines) == 1
    assert f'loaded {len(loaded)} tensors' in lines[0]
    assert sorted(missing) == [f'norm{i}.{p}' for i in range(4)
                               for p in ('bias', 'weight')]
    assert unexpected == []


def test_convert_tool_output_loads_strictly(source, tmp_path):
    src, dst = str(tmp_path / 'timm.pth'), str(tmp_path / 'ours.pth')
    torch.save(to_timm(source.state_dict()), src)
    subprocess.run([sys.executable, osp.join(REPO, 'tools',
                                             'convert_checkpoint.py'), src,
                    dst], check=True, capture_output=True)
    converted = torch.load(dst, weights_only=True)['state_dict']
    model = ConvNeXt(MICRO, out_indices=(3, ))
    sd = {k: v for k, v in converted.items()}
    sd.update({k: v for k, v in model.state_dict().items()
               if k.startswith('norm')})
    model.load_state_dict(sd, strict=True)
    assert torch.equal(model.stages[2][1].pwconv1.weight,
                       source.stages[2][1].pwconv1.weight)


def load_into(model, path):
    model.init_cfg = dict(type='Pretrained', checkpoint=str(path))
    model.init_weights()


def test_missing_file_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.pth.*does not exist'):
        load_into(ConvNeXt(MICRO), tmp_path / 'nope.pth')


def test_garbage_file_names_path(tmp_path):
    path = tmp_path / 'broken.pth'
    path.write_bytes(b'this is not a checkpoint' * 10)
    with pytest.raises(CheckpointError, match='broken.pth'):
        load_into(ConvNeXt(MICRO), path)


def test_non_convnext_checkpoint(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.randn(64, 3, 7, 7),
                               'layer1.0.bn1.weight': torch.ones(64)}}, path)
    with pytest.raises(CheckpointError, match='no ConvNeXt weights.*conv1'):
        load_into(ConvNeXt(MICRO), path)


def test_preset_mismatch_lists_shapes(source, tmp_path):
    path = tmp_path / 'micro.pth'
    torch.save(to_official(source.state_dict()), path)
    bigger = ConvNeXt(dict(depths=MICRO['depths'], dims=(16, 32, 64, 128)))
    before = {k: v.clone() for k, v in bigger.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_into(bigger, path)
    msg = str(err.value)
    assert 'downsample_layers.0.0.weight: checkpoint (8, 3, 4, 4) vs model ' \
        '(16, 3, 4, 4)' in msg and 'micro.pth' in msg
    # nothing was half-loaded
    assert all(torch.equal(before[k], v)
               for k, v in bigger.state_dict().items())


def test_too_few_matches(source, tmp_path):
    path = tmp_path / 'partial.pth'
    sd = {k: v for k, v in source.state_dict().items()
          if k.startswith('downsample_layers.0')}
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match='matches only 4 of'):
        load_into(ConvNeXt(MICRO), path)


def test_pickled_callable_is_refused(tmp_path):
    marker = tmp_path / 'pwned'

    class Evil:

        def __reduce__(self):
            return (open, (str(marker), 'w'))

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'x': torch.ones(1)}, 'payload': Evil()}, path)
    with pytest.raises(CheckpointError, match='evil.pth.*weights_only'):
        load_into(ConvNeXt(MICRO), path)
    assert not marker.exists()
