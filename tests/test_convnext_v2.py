"""ConvNeXt V2 (Woo et al., CVPR 2023): presets, the fused kernels and
torch.export, GRN under autocast and per sample, checkpoints of every
layout, layer-wise LR decay, the paper's dense configs and a toy training
run. The network's equality with its functional formulation
(test_backbone.py) and with the reference module (every fast-path option,
gradients, bf16 autocast; test_fast_path.py) is tested for V1 and V2 alike.

Micro presets at 32-64 px, except where a test is about a full preset
(parameter counts, built on the meta device).
"""
import glob
import importlib
import logging
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

from convnext_backbone import (GRN, CheckpointError, ConvNeXt, ConvNeXtV2,
                               ConvNeXtLayerDecayOptimizerConstructor,
                               convert_to_convnext, out_channels)
from convnext_backbone.blocks import onednn_fusion_available
from convnext_backbone.presets import (ARCH_SETTINGS, STRIDES,
                                       VERSION_PRESETS)
from helpers import (CONFIG_DIR, MICRO, assert_relatively_close, load,
                     captured_logs, randomize_, tiny_options, toy_options,
                     twins)
from tools.lib.models import build_model_without_weights
from tools.lib.prepare import prepare_train_cfg
from tools.lib.runner import build_runner
from tools.lib.toy_data import toy_cfg_options

X_SHAPE = (2, 3, 64, 96)

# Trunk parameters (stem, downsampling layers, blocks; no final or output
# norm, no head) of the official V2 models (facebookresearch/ConvNeXt-V2,
# models/convnextv2.py; timm's convnextv2_* count the same). With the
# classifier (final LN + 1000-way fc) they give the #params column of the
# official README (3.7M ... 660M).
TRUNK_PARAMS = dict(atto=3_386_760, femto=4_847_472, pico=8_552_256,
                    nano=14_981_520, tiny=27_864_960, base=87_690_752,
                    large=196_416_768, huge=657_467_008)
README_M = dict(atto=3.7, femto=5.2, pico=9.1, nano=15.6, tiny=28.6,
                base=89, large=198, huge=660)


# ------------------------------------------------------------- presets
def test_v2_presets_are_the_papers():
    assert VERSION_PRESETS[2] == tuple(TRUNK_PARAMS)


@pytest.mark.parametrize('arch', VERSION_PRESETS[2])
def test_preset_parameter_counts(arch):
    with torch.device('meta'):  # no memory, no init: counts only
        model = ConvNeXtV2(arch)
    dims = ARCH_SETTINGS[arch]['dims']
    n = sum(p.numel() for p in model.parameters())
    # the only parameters beyond the trunk: the four output LayerNorms
    assert n - 2 * sum(dims) == TRUNK_PARAMS[arch]
    classifier = TRUNK_PARAMS[arch] + 2 * dims[3] + dims[3] * 1000 + 1000
    digits = 1 if classifier < 50e6 else 0
    assert round(classifier / 1e6, digits) == README_M[arch]
    assert model.out_channels == dims == tuple(out_channels(arch))
    assert model.out_strides == STRIDES


def test_aliases_custom_arch_and_out_indices():
    with torch.device('meta'):
        assert ConvNeXtV2('H', out_indices=(3, )).dims[3] == 2816
    model = ConvNeXtV2(dict(depths=[1, 1, 1, 1], dims=[4, 8, 12, 16]),
                       out_indices=(0, -3))
    assert model.out_channels == (4, 8) and len(model.stages) == 2
    assert out_channels('huge', (2, 3)) == [1408, 2816]


@pytest.mark.parametrize('cls,arch,valid', [
    (ConvNeXtV2, 'small', 'atto, femto, pico, nano, tiny, base, large, huge'),
    (ConvNeXtV2, 'XL', 'atto, femto, pico, nano, tiny, base, large, huge'),
    (ConvNeXt, 'huge',
     'atto, femto, pico, nano, tiny, small, base, large, xlarge'),
])
def test_preset_of_the_other_version_is_an_error(cls, arch, valid):
    with pytest.raises(ValueError) as err:
        cls(arch)
    msg = str(err.value)
    assert f"unknown {cls.__name__} arch '{arch}'" in msg
    assert f'choose one of: {valid}' in msg
    other = 'ConvNeXt' if cls is ConvNeXtV2 else 'ConvNeXtV2'
    assert f'is a preset of {other})' in msg


def test_layer_scale_is_rejected():
    with pytest.raises(ValueError, match=r'ConvNeXtV2 has no layer scale '
                       r'\(layer_scale_init_value=1.0\)'):
        ConvNeXtV2(MICRO, layer_scale_init_value=1.0)
    assert ConvNeXtV2(MICRO, layer_scale_init_value=None).stages[0][0] \
        .gamma is None


def test_blocks_have_grn_and_no_gamma():
    model = ConvNeXtV2(MICRO)
    names = [n for n, _ in model.named_parameters() if n.startswith(
        'stages.0.0.')]
    assert names == [f'stages.0.0.{p}' for p in (
        'dwconv.weight', 'dwconv.bias', 'norm.weight', 'norm.bias',
        'pwconv1.weight', 'pwconv1.bias', 'pwconv2.weight', 'pwconv2.bias',
        'grn.gamma', 'grn.beta')]
    grn = model.stages[0][0].grn
    assert grn.gamma.shape == grn.beta.shape == (4 * MICRO['dims'][0], )
    # zero init: GRN starts as the identity
    assert not grn.gamma.any() and not grn.beta.any()
    x = torch.randn(1, 2, 3, 32)
    assert torch.equal(grn(x), x)


# ------------------------------------------- the network vs references
@pytest.mark.skipif(not onednn_fusion_available(),
                    reason='this torch has no oneDNN fused linear kernels')
def test_fused_kernels_run_in_inference():
    """GRN sits after GELU: the fused Linear + GELU and the fused Linear +
    residual add both still run."""
    model, ref = twins(2, fused_inference=True)
    model.eval(), ref.eval()
    x = torch.randn(*X_SHAPE)
    with torch.no_grad(), torch.profiler.profile() as prof:
        outs = model(x)
    calls = [e.name for e in prof.events()
             if e.name == 'mkldnn::_linear_pointwise']
    assert len(calls) >= sum(MICRO['depths'])
    with torch.no_grad():
        for out, exp in zip(outs, ref(x)):
            assert_relatively_close(out, exp)


def test_exported_graph_uses_plain_ops():
    """torch.export records the plain ops (GRN included), not the private
    fused kernels, and computes the same."""
    model, ref = twins(2)
    model.eval(), ref.eval()
    x = torch.randn(1, 3, 64, 64)
    exported = torch.export.export(model, (x, ))
    assert '_linear_pointwise' not in str(exported.graph)
    with torch.no_grad():
        for out, exp in zip(exported.module()(x), ref(x)):
            assert_relatively_close(out, exp)


# ------------------------------------------------------------------ GRN
def test_grn_statistics_and_arithmetic_in_fp32_under_autocast():
    grn = randomize_(GRN(32))
    # large activations: a bf16 sum of squares would lose the ratio
    x = (torch.randn(2, 5, 7, 32) * 40 + 300).bfloat16()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = grn(x)
    assert out.dtype == torch.bfloat16
    # computed in fp32 from the bf16 input, cast back once
    assert torch.equal(out, grn(x.float()).bfloat16())
    exact = x.double()
    norm = exact.square().sum(dim=(1, 2), keepdim=True).sqrt()
    ratio = norm / (norm.mean(dim=-1, keepdim=True) + 1e-6)
    expected = grn.gamma.double() * exact * ratio + grn.beta.double() + exact
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=0)


@pytest.mark.parametrize('train', [False, True])
def test_statistics_are_per_sample(train):
    """Batch size 1 gives each sample's output of a larger batch: GRN
    reduces over H and W only."""
    model = randomize_(ConvNeXtV2(MICRO)).train(train)
    x = torch.randn(3, 3, 32, 64)
    with torch.set_grad_enabled(train):
        batched = model(x)
        singles = [model(x[i:i + 1]) for i in range(3)]
    for level, out in enumerate(batched):
        for i in range(3):
            assert_relatively_close(out[i:i + 1], singles[i][level])


# ----------------------------------------------------- registry, options
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_built_from_config_under_each_scope(scope):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config(dict(custom_imports=dict(imports=['convnext_backbone']),
                      backbone=dict(type='ConvNeXtV2', arch=MICRO,
                                    frozen_stages=0, with_cp=True)))
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(cfg.backbone)
    assert type(model) is ConvNeXtV2 and registry.get('ConvNeXtV2') is \
        ConvNeXtV2
    assert not any(p.requires_grad for p in model.stages[0].parameters())


def test_deprecated_pretrained_becomes_init_cfg():
    with pytest.warns(DeprecationWarning, match='ConvNeXtV2: pretrained'):
        model = ConvNeXtV2(MICRO, pretrained='x.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='x.pth')


def test_get_layer_id_is_the_v1_rule():
    model = ConvNeXtV2(dict(depths=(1, 1, 6, 1), dims=(8, 16, 32, 64)))
    ids = {n: model.get_layer_id(n, 5, 'layer_wise')
           for n, _ in model.named_parameters()}
    assert ids['stages.2.5.grn.gamma'] == 3 + 5 // 3
    assert ids['stages.3.0.grn.beta'] == 5
    assert ids['norm3.weight'] == 6


# ----------------------------------------------------------- checkpoints
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
    """Official fine-tuned file: GRN (1, 1, 1, C), final norm and head."""
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
    """FCMAE pre-training file as models/fcmae.py saves it: the sparse
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
    """FCMAE file under dense names (what the released pt_only files are
    reported to hold): no final norm, no head, GRN (1, C), decoder."""
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
    """timm's atto..nano: 1x1-conv MLP, (C,) GRN run channels-first."""
    return {k: v[..., None, None] if re.search(r'mlp\.fc\d\.weight', k)
            else v for k, v in to_timm(sd).items()}


def to_mmpretrain(sd):
    out = renamed(trunk(sd), [(r'\.dwconv\.', '.depthwise_conv.'),
                              (r'\.pwconv(\d)\.', r'.pointwise_conv\1.'),
                              (r'^', 'backbone.')])
    # classifier norm on pooled features + linear head: not dense norms
    out['backbone.norm3.weight'] = torch.full((64, ), 7.0)
    out['backbone.norm3.bias'] = torch.full((64, ), 7.0)
    out.update(classifier_parts('head.'))
    return {'meta': {'mmpretrain_version': '1.2.0'}, 'state_dict': out}


def to_segmentor(sd):
    """A dense checkpoint (here mmseg's): the backbone with its output
    norms under ``backbone.``, heads beside it."""
    out = {'backbone.' + k: v for k, v in sd.items()}
    out['decode_head.conv_seg.weight'] = torch.randn(150, 16, 1, 1)
    out['auxiliary_head.conv_seg.weight'] = torch.randn(150, 8, 1, 1)
    return {'meta': {'iter': 160000}, 'state_dict': out}


def to_ddp_detector(sd):
    """A detector saved from its DDP wrapper: ``module.backbone.``."""
    out = {'module.backbone.' + k: v for k, v in sd.items()}
    out['module.neck.fpn_convs.0.conv.weight'] = torch.randn(4, 4, 3, 3)
    return {'state_dict': out}


# layout -> (writer, keeps the dense output norms, dropped key groups)
LAYOUTS = {
    'official': (to_official, False, 'norm, head'),
    'fcmae_sparse': (to_fcmae_sparse, False,
                     'proj, mask_token, decoder, pred'),
    'fcmae_dense': (to_fcmae_dense, False, 'proj, mask_token, decoder, pred'),
    'timm': (to_timm, False, 'head'),
    'timm_conv_mlp': (to_timm_conv_mlp, False, 'head'),
    'mmpretrain': (to_mmpretrain, False, 'head, norm3'),
    'segmentor': (to_segmentor, True, 'decode_head, auxiliary_head'),
    'ddp_detector': (to_ddp_detector, True, 'neck'),
}


@pytest.fixture(scope='module')
def source():
    return randomize_(ConvNeXtV2(MICRO), seed=1).eval()


@pytest.mark.parametrize('layout', list(LAYOUTS))
def test_layout_round_trip(layout, source, tmp_path):
    write, keeps_out_norms, dropped = LAYOUTS[layout]
    path = str(tmp_path / f'{layout}.pth')
    torch.save(write(source.state_dict()), path)
    target = ConvNeXtV2(MICRO, init_cfg=dict(type='Pretrained',
                                             checkpoint=path))
    with captured_logs(MMLogger.get_current_instance()) as logs:
        target.init_weights()
    lines = [m for m in logs.messages() if 'ConvNeXtV2: loaded' in m]
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


def test_convert_is_pure(source):
    sd = to_fcmae_sparse(source.state_dict())['model']
    before = {k: v.clone() for k, v in sd.items()}
    out = convert_to_convnext(sd)
    assert set(out) == set(trunk(source.state_dict()))
    assert sd.keys() == before.keys()
    assert all(torch.equal(sd[k], before[k]) for k in sd)
    assert out['stages.2.1.grn.gamma'].shape == (128, )


def test_convert_tool_output_loads_strictly(source, tmp_path):
    from tools.convert_checkpoint import main
    src, dst = str(tmp_path / 'timm.pth'), str(tmp_path / 'ours.pth')
    torch.save(to_timm_conv_mlp(source.state_dict()), src)
    main([src, dst])
    model = ConvNeXtV2(MICRO, out_indices=(3, ))
    sd = torch.load(dst, weights_only=True)['state_dict']
    sd.update({k: v for k, v in model.state_dict().items()
               if k.startswith('norm')})
    model.load_state_dict(sd, strict=True)


def load_into(model, path):
    model.init_cfg = dict(type='Pretrained', checkpoint=str(path))
    model.init_weights()


def test_v1_checkpoint_into_v2_is_an_error(tmp_path):
    path = tmp_path / 'convnext_v1.pth'
    v1 = randomize_(ConvNeXt(MICRO))
    torch.save({'model': trunk(v1.state_dict())}, path)
    model = ConvNeXtV2(MICRO)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError,
                       match=r"convnext_v1.pth' is a ConvNeXt V1 checkpoint "
                       r'\(layer-scale gamma, no GRN\); it cannot be loaded '
                       r"into ConvNeXtV2\(arch=.*use type='ConvNeXt'"):
        load_into(model, path)
    assert all(torch.equal(before[k], v)
               for k, v in model.state_dict().items())


def test_v2_checkpoint_into_v1_is_an_error(source, tmp_path):
    path = tmp_path / 'convnext_v2.pth'
    torch.save(to_official(source.state_dict()), path)
    with pytest.raises(CheckpointError,
                       match=r'is a ConvNeXt V2 checkpoint \(GRN, no '
                       r'layer-scale gamma\); it cannot be loaded into '
                       r"ConvNeXt\(arch=.*use type='ConvNeXtV2'"):
        load_into(ConvNeXt(MICRO), path)


def test_preset_mismatch_names_the_v2_backbone(source, tmp_path):
    path = tmp_path / 'micro.pth'
    torch.save(to_official(source.state_dict()), path)
    with pytest.raises(CheckpointError, match=r'does not fit this ConvNeXtV2 '
                       r'.*66 shape\(s\) differ, e\.g\. downsample_layers\.0'
                       r'\.0\.weight: checkpoint \(8, 3, 4, 4\) vs model '
                       r'\(16, 3, 4, 4\)'):
        load_into(ConvNeXtV2(dict(depths=MICRO['depths'],
                                  dims=(16, 32, 64, 128))), path)


# ------------------------------------------------------ layer-wise decay
@pytest.mark.parametrize('arch,num_layers', [
    ('atto', 5), ('femto', 5), ('pico', 5), ('nano', 6), ('tiny', 6),
    ('base', 12), ('large', 12), ('huge', 12)])
def test_num_layers_inferred_for_every_preset(arch, num_layers):
    """3 + ceil(depths[2] / 3): stage 2's last block (id 3 + b // 3) stays
    below stage 3 (id L) for 6, 8, 9 and 27 blocks; GRN's (C,) gamma and
    beta get no weight decay, as the official code decides by name."""
    with torch.device('meta'):
        model = torch.nn.Module()
        model.backbone = ConvNeXtV2(arch)
        model.head = torch.nn.Linear(8, 3)
    wrapper = ConvNeXtLayerDecayOptimizerConstructor(
        dict(optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05)),
        dict(decay_rate=0.5))(model)
    groups = {id(p): g for g in wrapper.optimizer.param_groups
              for p in g['params']}
    params = dict(model.named_parameters())
    assert max(g['layer_id'] for g in groups.values()) == num_layers + 1
    last = ARCH_SETTINGS[arch]['depths'][2] - 1
    stage2 = groups[id(params[f'backbone.stages.2.{last}.grn.gamma'])]
    assert stage2['layer_id'] == 3 + last // 3 < num_layers
    stage3 = groups[id(params['backbone.stages.3.0.grn.beta'])]
    assert (stage3['layer_id'], stage3['weight_decay']) == (num_layers, 0.)
    assert groups[id(params['backbone.stages.3.0.pwconv1.weight'])][
        'weight_decay'] == 0.05


def per_param(optim_wrapper, model):
    """``name -> (lr, weight_decay)`` of every parameter in a group."""
    by_tensor = {id(p): (g['lr'], g['weight_decay'])
                 for g in optim_wrapper.optimizer.param_groups
                 for p in g['params']}
    return {n: by_tensor[id(p)] for n, p in model.named_parameters()
            if id(p) in by_tensor}


@pytest.mark.parametrize('name,depth2,num_layers', [
    ('mask_rcnn_convnextv2_b', 6, 5), ('upernet_convnextv2_b_512', 8, 6)])
def test_same_groups_as_openmmlab_constructor(name, depth2, num_layers):
    """The V2 paper configs, shrunk, under mmdet's and mmseg's scope: each
    parameter gets the lr and weight decay of mmdet's / mmseg's own
    LearningRateDecayOptimizerConstructor (which takes any backbone whose
    class name contains 'ConvNeXt')."""
    cfg = load(f'convnextv2/{name}')
    cfg = prepare_train_cfg(cfg, work_dir='unused', check_data=False,
                            cfg_options={
                                **tiny_options(cfg),
                                'model.backbone.arch': dict(
                                    _delete_=True, depths=[1, 1, depth2, 1],
                                    dims=[8, 16, 32, 64]),
                                'optim_wrapper.paramwise_cfg.num_layers':
                                num_layers})
    model = build_model_without_weights(cfg)
    assert type(model.backbone) is ConvNeXtV2
    scope = cfg.default_scope
    official = importlib.import_module(f'{scope}.engine.optimizers') \
        .LearningRateDecayOptimizerConstructor
    wrapper_cfg = dict(optimizer=dict(cfg.optim_wrapper.optimizer))
    paramwise = dict(cfg.optim_wrapper.paramwise_cfg)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # their per-parameter lines
    try:
        theirs = per_param(official(wrapper_cfg, paramwise)(model), model)
    finally:
        logger.setLevel(level)
    ours = per_param(ConvNeXtLayerDecayOptimizerConstructor(
        wrapper_cfg, paramwise)(model), model)
    assert ours == theirs
    assert len({lr for lr, _ in ours.values()}) == (
        num_layers + 2 if paramwise['decay_type'] == 'layer_wise' else 6)


# --------------------------------------------------------------- configs
URL = 'https://dl.fbaipublicfiles.com/convnext/convnextv2/{}/convnextv2_{}'
# The paper's COCO runs (Table 6, Appendix A.3): arch, drop path (ours,
# from the sweep), decay rate (ours, from the sweep), num_layers.
COCO = {
    'mask_rcnn_convnextv2_b': ('base', 0.4, 0.95, 12),
    'mask_rcnn_convnextv2_l': ('large', 0.5, 0.95, 12),
    'mask_rcnn_convnextv2_h': ('huge', 0.5, 0.95, 12),
}
# The paper's ADE20K runs (Table 7, Appendix A.4): arch, drop path (ours),
# params (M) of Table 7.
ADE = {
    'upernet_convnextv2_b_512': ('base', 0.4, 122),
    'upernet_convnextv2_l_512': ('large', 0.4, 235),
    'upernet_convnextv2_h_512': ('huge', 0.4, 707),
}


def test_every_v2_config_has_a_row():
    names = {osp.splitext(osp.basename(p))[0] for p in glob.glob(
        osp.join(CONFIG_DIR, 'convnextv2', '*.py'))}
    assert names == set(COCO) | set(ADE)


def by_type(transforms, type_name):
    found = [t for t in transforms if t['type'] == type_name]
    assert len(found) == 1, (type_name, transforms)
    return found[0]


def load_v2(name, arch, drop_path, checkpoint):
    """A V2 config, checked for what every one of them states: the V2
    backbone (no layer scale), its arch, drop path and weights."""
    cfg = load(f'convnextv2/{name}')
    backbone = cfg.model.backbone
    assert (backbone.type, backbone.arch, backbone.drop_path_rate,
            backbone.layer_scale_init_value) == ('ConvNeXtV2', arch,
                                                 drop_path, None)
    assert backbone.init_cfg == dict(type='Pretrained', checkpoint=checkpoint)
    return cfg


@pytest.mark.parametrize('name', sorted(COCO))
def test_coco_hyper_parameters(name):
    arch, drop_path, decay_rate, num_layers = COCO[name]
    # the FCMAE pre-trained encoder
    cfg = load_v2(name, arch, drop_path,
                  URL.format('pt_only', f'{arch}_1k_224_fcmae.pt'))
    assert cfg.model.type == 'MaskRCNN'
    optim = cfg.optim_wrapper
    assert (optim.type, optim.optimizer.type, optim.optimizer.lr,
            optim.optimizer.weight_decay) == ('AmpOptimWrapper', 'AdamW',
                                              1e-4, 0.05)
    assert optim.paramwise_cfg == dict(
        decay_rate=decay_rate, decay_type='layer_wise', num_layers=num_layers)
    # batch 32 = 8 x 4, 3x schedule
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=32)
    assert cfg.train_cfg.max_epochs == 36
    # large-scale jittering: 1024x1024, scale range [0.1, 2.0]
    pipeline = cfg.train_dataloader.dataset.pipeline
    resize = by_type(pipeline, 'RandomResize')
    assert (tuple(resize.scale), tuple(resize.ratio_range)) == ((1024, 1024),
                                                                (0.1, 2.0))
    assert tuple(by_type(pipeline, 'RandomCrop').crop_size) == (1024, 1024)
    assert cfg.model.data_preprocessor.batch_augments == [
        dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]
    # single-scale test with soft-NMS
    assert cfg.model.test_cfg.rcnn.nms.type == 'soft_nms'
    assert tuple(by_type(cfg.test_dataloader.dataset.pipeline,
                         'Resize').scale) == (1333, 800)


@pytest.mark.parametrize('name', sorted(ADE))
def test_ade20k_hyper_parameters(name):
    arch, drop_path, _ = ADE[name]
    # the weights after IN-1K fine-tuning
    cfg = load_v2(name, arch, drop_path,
                  URL.format('im1k', f'{arch}_1k_224_ema.pt'))
    optim = cfg.optim_wrapper
    assert (optim.optimizer.lr, optim.optimizer.weight_decay) == (1e-4, 0.05)
    assert optim.paramwise_cfg == dict(
        decay_rate=0.9, decay_type='stage_wise', num_layers=12)
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    assert cfg.train_cfg.max_iters == 160000
    assert tuple(by_type(cfg.train_dataloader.dataset.pipeline,
                         'RandomCrop').crop_size) == (512, 512)
    resizes = cfg.tta_pipeline[1].transforms[0]
    assert [tuple(r.scale) for r in resizes] == [
        (int(2048 * r), int(512 * r)) for r in (0.75, 0.875, 1.0, 1.125, 1.25)]


@pytest.mark.parametrize('name', sorted(COCO) + sorted(ADE))
def test_full_model(name):
    """Build once (on the meta device: shapes only): the neck's / heads'
    in_channels are the backbone's out_channels, the parameter count is
    the paper's (ADE20K, Table 7) and the lr-decay constructor takes it."""
    cfg = prepare_train_cfg(load(f'convnextv2/{name}'), work_dir='unused',
                            check_data=False)
    with torch.device('meta'):
        model = build_model_without_weights(cfg)
    out = list(model.backbone.out_channels)
    assert type(model.backbone) is ConvNeXtV2
    if name in COCO:
        assert list(model.neck.in_channels) == out
    else:
        assert list(model.decode_head.in_channels) == out
        assert model.auxiliary_head.in_channels == out[2]
        params = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(params - ADE[name][-1]) < 1, params
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = [g['lr'] for g in wrapper.optimizer.param_groups]
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert min(lrs) == pytest.approx(
        1e-4 * paramwise.decay_rate**(paramwise.num_layers + 1))


@pytest.mark.parametrize('name', ['mask_rcnn_convnextv2_b',
                                  'upernet_convnextv2_b_512'])
def test_one_step_on_cpu(name, toy_coco, toy_ade, tmp_path, monkeypatch):
    """One training iteration and one validation with the paper config's
    pipelines (scales / 8), a micro V2 backbone and toy data."""
    monkeypatch.setattr(Config, 'pretty_text', property(lambda cfg: cfg.text))
    cfg = load(f'convnextv2/{name}')
    coco = name in COCO
    options = {
        **toy_options(cfg, toy_coco if coco else toy_ade),
        **tiny_options(cfg),
        'train_dataloader.dataset.indices': 2,
        'train_dataloader.batch_size': 2,
        'val_dataloader.dataset.indices': 1,
    }
    if coco:  # the LSJ pad, shrunk like the crop
        options['model.data_preprocessor.batch_augments'] = [
            dict(type='BatchFixedSizePad', size=(128, 128), pad_mask=True)]
    cfg = prepare_train_cfg(cfg, work_dir=str(tmp_path), cfg_options=options)
    with torch.backends.mkldnn.flags(enabled=False):
        runner = build_runner(cfg)
        runner.train()
    assert type(runner.model.backbone) is ConvNeXtV2
    scalars = runner.message_hub.log_scalars
    assert runner.iter == 1
    assert math.isfinite(scalars['train/loss'].current())
    assert ('val/coco/bbox_mAP' if coco else 'val/mIoU') in scalars


# ------------------------------------------------------------ toy config
def test_toy_v2_detector_trains(toy_coco, tmp_path, monkeypatch):
    """The toy V2 config trains on the shared toy set through
    tools.lib.prepare / runner, as tools/train.py runs it, and evaluates:
    finite losses, GRN (zero at init) learnt, no layer scale."""
    monkeypatch.setattr(Config, 'pretty_text', property(lambda cfg: cfg.text))
    cfg = Config.fromfile(osp.join(CONFIG_DIR, 'toy',
                                   'mask_rcnn_convnextv2_atto_toy.py'))
    options = {
        **toy_cfg_options(toy_coco, coco=True),
        'train_cfg.max_epochs': 1, 'train_cfg.val_interval': 1,
        'train_dataloader.batch_size': 2,
        'default_hooks.logger.interval': 1, 'log_level': 'WARNING',
        # the 64 px toy images as they are, fewer RoIs: a CPU-second step
        'train_dataloader.dataset.pipeline.2.scale': (64, 64),
        'val_dataloader.dataset.pipeline.1.scale': (64, 64),
        'model.train_cfg.rpn_proposal.max_per_img': 100,
        'model.train_cfg.rcnn.sampler.num': 32,
        'model.test_cfg.rpn.max_per_img': 50,
    }
    cfg = prepare_train_cfg(cfg, work_dir=str(tmp_path), cfg_options=options)
    runner = build_runner(cfg)
    runner.train()
    assert runner.iter == 4  # 8 images, batch 2, one epoch
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert 'coco/bbox_mAP' in runner.message_hub.log_scalars.keys() or \
        'val/coco/bbox_mAP' in runner.message_hub.log_scalars
    backbone = runner.model.backbone
    assert type(backbone) is ConvNeXtV2
    grn = backbone.stages[3][1].grn
    assert grn.gamma.abs().sum() > 0 and grn.beta.abs().sum() > 0
    assert all(block.gamma is None for stage in backbone.stages
               for block in stage)
