"""Checkpoint layouts of ConvNeXt V1 and V2: each foreign layout
round-trips to the same features; bad files (and a file of the other
version) give errors that name the file and the problem."""
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.logging import MMLogger

from convnext_backbone import ConvNeXt, convert_to_convnext
from convnext_backbone.checkpoint import CheckpointError
from helpers import MICRO, VERSIONS, captured_logs, randomize_

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def trunk(sd):
    return {k: v for k, v in sd.items() if not re.match(r'norm\d\.', k)}


def renamed(sd, rules):
    """``sd`` with each key passed through the (pattern, replacement)
    rules in order."""
    out = {}
    for key, value in sd.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def classifier_parts(prefix=''):
    return {f'{prefix}norm.weight': torch.ones(64),
            f'{prefix}norm.bias': torch.zeros(64),
            f'{prefix}fc.weight': torch.randn(1000, 64),
            f'{prefix}fc.bias': torch.zeros(1000)}


def fcmae_parts():
    """What an FCMAE file holds besides the encoder (official
    models/fcmae.py: 512-wide decoder of one V2 block, its projection,
    mask token and pixel prediction); shrunk here."""
    return {'proj.weight': torch.randn(16, 64, 1, 1),
            'proj.bias': torch.zeros(16),
            'mask_token': torch.zeros(1, 16, 1, 1),
            'decoder.0.dwconv.weight': torch.randn(16, 1, 7, 7),
            'decoder.0.grn.gamma': torch.zeros(1, 1, 1, 64),
            'pred.weight': torch.randn(3072, 16, 1, 1),
            'pred.bias': torch.zeros(3072)}


def to_official(sd):
    """Official fine-tuned file: V2's GRN (1, 1, 1, C), final norm and
    head."""
    out = {k: v.reshape(1, 1, 1, -1) if '.grn.' in k else v
           for k, v in trunk(sd).items()}
    out.update(renamed(classifier_parts(), [(r'^fc\.', 'head.')]))
    return {'model': out}


def sparse_kernel(weight):
    """A Conv2d weight as a MinkowskiEngine kernel: the inverse of the
    official utils.remap_checkpoint_keys."""
    out_dim, in_dim, size, _ = weight.shape
    if in_dim == 1:  # depthwise: (k*k, C)
        return weight.transpose(3, 2).reshape(out_dim, size * size).T
    return weight.transpose(3, 2).reshape(out_dim, in_dim,
                                          size * size).permute(2, 1, 0)


def to_fcmae_sparse(sd):
    """V2's FCMAE pre-training file as models/fcmae.py saves it: the sparse
    encoder's names and shapes under ``encoder.``, plus the decoder."""
    out = {}
    for key, value in trunk(sd).items():
        sparse_conv = re.match(r'(downsample_layers\.[123]\.1|stages\.\d\.\d+'
                               r'\.dwconv)\.(weight|bias)$', key)
        if sparse_conv and key.endswith('weight'):
            key, value = key[:-len('weight')] + 'kernel', sparse_kernel(value)
        elif sparse_conv:
            value = value[None]  # Minkowski biases are (1, C)
        key = re.sub(r'^(downsample_layers\.[123]\.0|stages\.\d\.\d+\.norm)'
                     r'\.', r'\1.ln.', key)
        key = re.sub(r'\.(pwconv[12])\.', r'.\1.linear.', key)
        out['encoder.' + key] = value[None] if '.grn.' in key else value
    out.update(fcmae_parts())
    return {'model': out}


def to_fcmae_dense(sd):
    """V2's FCMAE file under dense names (what the released pt_only files
    are reported to hold): no final norm, no head, GRN (1, C), decoder."""
    out = {k: v[None] if '.grn.' in k else v for k, v in trunk(sd).items()}
    out.update(fcmae_parts())
    return {'model': out}


TIMM_RULES = [
    (r'^downsample_layers\.0\.', 'stem.'),
    (r'^downsample_layers\.(\d)\.', r'stages.\1.downsample.'),
    (r'^stages\.(\d)\.(\d+)\.', r'stages.\1.blocks.\2.'),
    (r'\.dwconv\.', '.conv_dw.'),
    (r'\.pwconv(\d)\.', r'.mlp.fc\1.'),
    (r'\.grn\.gamma$', '.mlp.grn.weight'),
    (r'\.grn\.beta$', '.mlp.grn.bias'),
]


def to_timm(sd):
    out = renamed(trunk(sd), TIMM_RULES)
    out.update(classifier_parts('head.'))
    return out


def to_timm_conv_mlp(sd):
    """timm's atto..nano: 1x1-conv MLP (V2's (C,) GRN run
    channels-first)."""
    return {k: v[..., None, None] if re.search(r'mlp\.fc\d\.weight', k)
            else v for k, v in to_timm(sd).items()}


def to_mmpretrain(sd):
    out = renamed(trunk(sd), [(r'\.dwconv\.', '.depthwise_conv.'),
                              (r'\.pwconv(\d)\.', r'.pointwise_conv\1.'),
                              (r'^', 'backbone.')])
    # classifier norm on pooled features + linear head: not dense norms
    out['backbone.norm3.weight'] = torch.full((64, ), 7.0)
    out['backbone.norm3.bias'] = torch.full((64, ), 7.0)
    out['head.fc.weight'] = torch.randn(1000, 64)
    out['head.fc.bias'] = torch.zeros(1000)
    return {'meta': {'mmpretrain_version': '1.2.0'}, 'state_dict': out}


def to_detector(sd):
    """A dense checkpoint (here mmdet's): the backbone with its output
    norms under ``backbone.``, neck and heads beside it."""
    out = {'backbone.' + k: v for k, v in sd.items()}
    out['neck.lateral_convs.0.conv.weight'] = torch.randn(4, 8, 1, 1)
    out['roi_head.bbox_head.fc_cls.weight'] = torch.randn(3, 4)
    return {'meta': {'epoch': 3}, 'state_dict': out}


def to_segmentor(sd):
    """A dense checkpoint of mmseg: heads beside the backbone."""
    out = {'backbone.' + k: v for k, v in sd.items()}
    out['decode_head.conv_seg.weight'] = torch.randn(150, 16, 1, 1)
    out['auxiliary_head.conv_seg.weight'] = torch.randn(150, 8, 1, 1)
    return {'meta': {'iter': 160000}, 'state_dict': out}


def to_ddp(sd):
    """The backbone alone saved from its DDP wrapper: ``module.``."""
    return {'state_dict': {'module.' + k: v for k, v in sd.items()}}


def to_ddp_detector(sd):
    """A detector saved from its DDP wrapper: ``module.backbone.``."""
    out = {'module.backbone.' + k: v for k, v in sd.items()}
    out['module.neck.fpn_convs.0.conv.weight'] = torch.randn(4, 4, 3, 3)
    return {'state_dict': out}


# layout -> (writer, keeps the dense output norms, dropped key groups,
# the versions that have it: FCMAE pre-training is V2's)
LAYOUTS = {
    'official': (to_official, False, 'norm, head', (1, 2)),
    'fcmae_sparse': (to_fcmae_sparse, False,
                     'proj, mask_token, decoder, pred', (2, )),
    'fcmae_dense': (to_fcmae_dense, False, 'proj, mask_token, decoder, pred',
                    (2, )),
    'timm': (to_timm, False, 'head', (1, 2)),
    'timm_conv_mlp': (to_timm_conv_mlp, False, 'head', (1, 2)),
    'mmpretrain': (to_mmpretrain, False, 'head, norm3', (1, 2)),
    'detector': (to_detector, True, 'neck, roi_head', (1, 2)),
    'segmentor': (to_segmentor, True, 'decode_head, auxiliary_head', (1, 2)),
    'ddp': (to_ddp, True, 'none', (1, 2)),
    'ddp_detector': (to_ddp_detector, True, 'neck', (1, 2)),
}


def make_source(version: int = 1):
    """A micro backbone of ``version`` with random weights, in eval mode."""
    return randomize_(VERSIONS[version][0](MICRO), seed=1).eval()


@pytest.fixture
def source():
    return make_source(1)


@pytest.mark.parametrize('version,layout', [
    (version, layout) for layout, (*_, versions) in LAYOUTS.items()
    for version in versions])
def test_layout_round_trip(version, layout, tmp_path):
    write, keeps_out_norms, dropped, _ = LAYOUTS[layout]
    source = make_source(version)
    path = str(tmp_path / f'{layout}.pth')
    torch.save(write(source.state_dict()), path)
    target = type(source)(MICRO, init_cfg=dict(type='Pretrained',
                                               checkpoint=path))
    with captured_logs(MMLogger.get_current_instance()) as logs:
        target.init_weights()
    lines = [m for m in logs.messages()
             if f'{type(source).__name__}: loaded' in m]
    assert len(lines) == 1, logs.messages()
    assert lines[0].endswith(f'({dropped})'), lines[0]
    src_sd, tgt_sd = source.state_dict(), target.state_dict()
    for key in trunk(src_sd):
        assert torch.equal(src_sd[key], tgt_sd[key]), key
    for i in range(4):  # dense norms: loaded, or fresh ones
        expected = src_sd[f'norm{i}.weight'] if keeps_out_norms else \
            torch.ones(MICRO['dims'][i])
        assert torch.equal(tgt_sd[f'norm{i}.weight'], expected)
    target.load_state_dict({k: v for k, v in src_sd.items()
                            if k.startswith('norm')}, strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(source(x), target.eval()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize('version,layout,key', [
    (1, 'mmpretrain', 'state_dict'), (2, 'fcmae_sparse', 'model')])
def test_convert_is_pure_and_drops_heads(version, layout, key):
    source = make_source(version)
    sd = LAYOUTS[layout][0](source.state_dict())[key]
    before = {k: (v, v.clone()) for k, v in sd.items()}
    out = convert_to_convnext(sd)
    assert sd.keys() == before.keys()  # input untouched
    assert all(sd[k] is v and torch.equal(v, copy)
               for k, (v, copy) in before.items())
    assert not any(k.startswith(('head', 'norm')) for k in out)
    expected = trunk(source.state_dict())
    assert set(out) == set(expected)
    # in the model's shapes (V2: GRN (C, ), dense kernels)
    assert all(out[k].shape == v.shape for k, v in expected.items())


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


@pytest.mark.parametrize('version,layout', [(1, 'timm'),
                                            (2, 'timm_conv_mlp')])
def test_convert_tool_output_loads_strictly(version, layout, tmp_path):
    source = make_source(version)
    src, dst = str(tmp_path / 'timm.pth'), str(tmp_path / 'ours.pth')
    torch.save(LAYOUTS[layout][0](source.state_dict()), src)
    subprocess.run([sys.executable, osp.join(REPO, 'tools',
                                             'convert_checkpoint.py'), src,
                    dst], check=True, capture_output=True)
    converted = torch.load(dst, weights_only=True)['state_dict']
    model = type(source)(MICRO, out_indices=(3, ))
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


# version -> tensors of a micro trunk: 16 of the stem and downsampling
# layers, 9 (V1: gamma) or 10 (V2: GRN's two) per block
MICRO_TRUNK_TENSORS = {1: 16 + 9 * 5, 2: 16 + 10 * 5}


@pytest.mark.parametrize('version', sorted(VERSIONS))
def test_preset_mismatch_lists_shapes(version, tmp_path):
    path = tmp_path / 'micro.pth'
    torch.save(to_official(make_source(version).state_dict()), path)
    backbone_cls = VERSIONS[version][0]
    bigger = backbone_cls(dict(depths=MICRO['depths'],
                               dims=(16, 32, 64, 128)))
    before = {k: v.clone() for k, v in bigger.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_into(bigger, path)
    msg = str(err.value)
    assert f"micro.pth' does not fit this {backbone_cls.__name__} " in msg
    assert f'{MICRO_TRUNK_TENSORS[version]} shape(s) differ, e.g. ' \
        'downsample_layers.0.0.weight: checkpoint (8, 3, 4, 4) vs model ' \
        '(16, 3, 4, 4)' in msg
    # nothing was half-loaded
    assert all(torch.equal(before[k], v)
               for k, v in bigger.state_dict().items())


# the error of each version's checkpoint loaded into the other version
OTHER_VERSION = {
    1: r"convnext_v1.pth' is a ConvNeXt V1 checkpoint \(layer-scale gamma, no "
    r"GRN\); it cannot be loaded into ConvNeXtV2\(arch=.*use type='ConvNeXt'",
    2: r"convnext_v2.pth' is a ConvNeXt V2 checkpoint \(GRN, no layer-scale "
    r"gamma\); it cannot be loaded into ConvNeXt\(arch=.*use "
    r"type='ConvNeXtV2'",
}


@pytest.mark.parametrize('version', sorted(VERSIONS))
def test_checkpoint_of_the_other_version_is_an_error(version, tmp_path):
    path = tmp_path / f'convnext_v{version}.pth'
    torch.save(to_official(make_source(version).state_dict()), path)
    model = VERSIONS[3 - version][0](MICRO)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match=OTHER_VERSION[version]):
        load_into(model, path)
    assert all(torch.equal(before[k], v)
               for k, v in model.state_dict().items())


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
