"""ConvNeXt and ConvNeXtV2 backbones: presets, outputs, reference equality,
options, errors, and V2's own parts (GRN, no layer scale).

Micro presets at 32-64 px, except where a test is about a full preset
(parameter counts, built on the meta device).
"""

import pytest
import torch

from convnext_backbone import (ARCH_SETTINGS, GRN, ConvNeXt, ConvNeXtV2,
                               out_channels)
from convnext_backbone.presets import STRIDES, VERSION_PRESETS
from helpers import MICRO, VERSIONS, assert_relatively_close, randomize_


def expected_trunk_params(depths, dims, version=1, in_chans=3, out_norms=4):
    """Parameter count written from the papers' description of each layer."""
    n = in_chans * 16 * dims[0] + dims[0] + 2 * dims[0]  # stem conv + LN
    for i in range(1, 4):  # LN + 2x2 conv
        n += 2 * dims[i - 1] + 4 * dims[i - 1] * dims[i] + dims[i]
    for d, c in zip(depths, dims):
        # V1 ends a block with layer scale gamma (C), V2 has GRN's gamma and
        # beta (4C each) after GELU instead
        scale = c if version == 1 else 2 * 4 * c
        block = (49 * c + c) + 2 * c + (c * 4 * c + 4 * c) + \
            (4 * c * c + c) + scale
        n += d * block
    return n + sum(2 * c for c in dims[4 - out_norms:])


# Classification totals (1000-class head + final norm), M, as published: V1
# by timm / the paper (T 28.59M ... XL 350.20M), V2 by the official README's
# #params column (facebookresearch/ConvNeXt-V2: 3.7M ... 660M).
PUBLISHED_M = {
    1: dict(tiny=28.59, small=50.22, base=88.59, large=197.77,
            xlarge=350.20),
    2: dict(atto=3.7, femto=5.2, pico=9.1, nano=15.6, tiny=28.6, base=89,
            large=198, huge=660),
}
# Trunk parameters (stem, downsampling layers, blocks; no final or output
# norm, no head) of the official V2 models (facebookresearch/ConvNeXt-V2,
# models/convnextv2.py; timm's convnextv2_* count the same).
V2_TRUNK_PARAMS = dict(atto=3_386_760, femto=4_847_472, pico=8_552_256,
                       nano=14_981_520, tiny=27_864_960, base=87_690_752,
                       large=196_416_768, huge=657_467_008)


def test_v2_presets_are_the_papers():
    assert VERSION_PRESETS[2] == tuple(V2_TRUNK_PARAMS)


@pytest.mark.parametrize('version,arch', [
    (version, arch) for version in sorted(VERSIONS)
    for arch in VERSION_PRESETS[version]])
def test_preset_parameter_counts(version, arch):
    with torch.device('meta'):  # no memory, no init: counts only
        model = VERSIONS[version][0](arch)
    n = sum(p.numel() for p in model.parameters())
    depths, dims = ARCH_SETTINGS[arch]['depths'], ARCH_SETTINGS[arch]['dims']
    assert n == expected_trunk_params(depths, dims, version)
    if version == 2:  # the only parameters beyond the trunk: output norms
        assert n - 2 * sum(dims) == V2_TRUNK_PARAMS[arch]
    assert model.out_channels == dims == tuple(out_channels(arch))
    assert model.out_strides == STRIDES
    if arch in PUBLISHED_M[version]:
        classifier = n - 2 * sum(dims) + 2 * dims[3] + dims[3] * 1000 + 1000
        # V1 is published to 2 decimals, V2 to 1 below 50M, else whole M
        digits = 2 if version == 1 else 1 if classifier < 50e6 else 0
        assert round(classifier / 1e6, digits) == PUBLISHED_M[version][arch]


@pytest.mark.parametrize('arch', ['atto', 'femto', 'pico', 'nano'])
def test_small_presets_forward(arch):
    model = ConvNeXt(arch).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    dims = ARCH_SETTINGS[arch]['dims']
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // s, 96 // s) for c, s in zip(dims, STRIDES)]


@pytest.mark.parametrize('version,alias,depths,dims', [
    (1, 'T', (3, 3, 9, 3), (96, 192, 384, 768)),
    (2, 'H', (3, 3, 27, 3), (352, 704, 1408, 2816)),
])
def test_aliases_custom_arch_and_out_indices(version, alias, depths, dims):
    backbone_cls = VERSIONS[version][0]
    with torch.device('meta'):
        model = backbone_cls(alias, out_indices=(3, ))
    assert (model.depths, model.dims) == (depths, dims)
    assert out_channels(alias, (2, 3)) == list(dims[2:])
    custom = dict(depths=[1, 1, 1, 1], dims=[4, 8, 12, 16])
    assert backbone_cls(custom).out_channels == (4, 8, 12, 16)
    model = backbone_cls(custom, out_indices=(0, -3))
    assert model.out_channels == (4, 8) and len(model.stages) == 2


@pytest.mark.parametrize('version', sorted(VERSIONS))
@pytest.mark.parametrize('out_indices', [(0, 1, 2, 3), (1, 3), (-1, )])
def test_forward_matches_reference(version, out_indices):
    """The backbone equals its functional formulation (helpers.py)."""
    backbone_cls, _, reference_forward = VERSIONS[version]
    model = randomize_(backbone_cls(MICRO, out_indices=out_indices)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outs = model(x)
    sd = model.state_dict()
    norm_idx = tuple(i % 4 for i in out_indices)  # all include stage 3
    ref = reference_forward(sd, MICRO['depths'], norm_idx, x)
    assert len(outs) == len(ref) == len(norm_idx)
    for o, r in zip(outs, ref):
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4)


def test_only_used_outputs_are_built():
    model = ConvNeXt(MICRO, out_indices=(0, -3))
    names = {n.split('.')[0] for n, _ in model.named_parameters()}
    assert names == {'downsample_layers', 'stages', 'norm0', 'norm1'}
    assert len(model.stages) == 2 and model.out_channels == (8, 16)
    # every parameter gets a gradient: nothing unused under DDP
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_drop_path_grows_linearly_over_all_blocks():
    model = ConvNeXt(MICRO, drop_path_rate=0.5)
    rates = [getattr(b.drop_path, 'drop_prob', 0.0)
             for s in model.stages for b in s]
    assert rates == pytest.approx(
        torch.linspace(0, 0.5, sum(MICRO['depths'])).tolist())


def test_with_cp_same_outputs_and_gradients():
    x = torch.randn(2, 3, 64, 64)
    grads, outs = [], []
    for with_cp in (False, True):
        torch.manual_seed(0)
        model = randomize_(ConvNeXt(MICRO, with_cp=with_cp)).train()
        out = model(x)
        sum((o**2).mean() for o in out).backward()
        outs.append(out)
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_channels_last_same_outputs():
    x = torch.randn(1, 3, 64, 64)
    ref = randomize_(ConvNeXt(MICRO, channels_last=False)).eval()
    cl = randomize_(ConvNeXt(MICRO, channels_last=True)).eval()
    with torch.no_grad():
        for a, b in zip(ref(x), cl(x)):
            assert b.shape == a.shape
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('frozen_stages', [1, 3])
def test_frozen_stages_unchanged_after_step(frozen_stages):
    model = randomize_(
        ConvNeXt(MICRO, frozen_stages=frozen_stages, drop_path_rate=0.3))
    model.train()
    frozen = [m for i in range(frozen_stages)
              for m in (model.downsample_layers[i], model.stages[i])]
    assert all(not m.training for m in frozen)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1)
    sum(o.mean() for o in model(torch.randn(2, 3, 32, 32))).backward()
    opt.step()
    for name, p in model.named_parameters():
        parts = name.split('.')
        is_frozen = parts[0] in ('downsample_layers', 'stages') and \
            int(parts[1]) < frozen_stages
        assert p.requires_grad != is_frozen, name
        changed = not torch.equal(before[name], p)
        assert changed != is_frozen, name


def test_layer_norm_statistics_in_fp32_under_autocast():
    model = randomize_(ConvNeXt(MICRO)).eval()
    x = torch.randn(1, 3, 64, 64) * 50 + 100  # large mean: bf16 LN would fail
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            amp = model(x)
            ln = model.norm0(torch.randn(1, 8, 4, 4).bfloat16() * 30 + 500)
    assert ln.dtype == torch.bfloat16
    # normalised output of a mean-500 input must be ~zero-mean, unit-var
    normed = (ln.float() - model.norm0.bias[:, None, None]) / \
        model.norm0.weight[:, None, None]
    assert normed.mean(1).abs().max() < 0.1
    for a, r in zip(amp, ref):
        assert torch.isfinite(a.float()).all()
        rel = (a.float() - r).norm() / r.norm()
        assert rel < 0.1


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


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(arch='tiyn'), "unknown ConvNeXt arch 'tiyn'"),
    (dict(arch=dict(depths=[1, 1, 1], dims=[8, 16, 32, 64])),
     'depths=[1, 1, 1]'),
    (dict(arch=dict(depth=[1, 1, 1, 1], dims=[8, 16, 32, 64])),
     "unknown: ['depth']"),
    (dict(out_indices=(0, 4)), 'out_indices entry 4'),
    (dict(out_indices=(-5, )), 'out_indices entry -5'),
    (dict(out_indices=(1, -3)), 'names a stage twice'),
    (dict(frozen_stages=5), 'frozen_stages=5'),
    (dict(frozen_stages=-2), 'frozen_stages=-2'),
    (dict(drop_path_rate=1.0), 'drop_path_rate=1.0'),
    (dict(drop_path_rate=-0.1), 'drop_path_rate=-0.1'),
])
def test_bad_arguments_name_the_value(kwargs, fragment):
    kwargs.setdefault('arch', MICRO)
    with pytest.raises(ValueError) as err:
        ConvNeXt(**kwargs)
    assert fragment in str(err.value)


@pytest.mark.parametrize('version', sorted(VERSIONS))
@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_built_from_config_under_each_scope(scope, version):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    backbone_cls = VERSIONS[version][0]
    name = backbone_cls.__name__
    cfg = Config(dict(custom_imports=dict(imports=['convnext_backbone']),
                      backbone=dict(type=name, arch=MICRO, frozen_stages=1,
                                    with_cp=True)))
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(cfg.backbone)
    assert type(model) is backbone_cls and registry.get(name) is backbone_cls
    assert not any(p.requires_grad for p in model.stages[0].parameters())


@pytest.mark.parametrize('version', sorted(VERSIONS))
def test_deprecated_pretrained_becomes_init_cfg(version):
    backbone_cls = VERSIONS[version][0]
    with pytest.warns(DeprecationWarning,
                      match=f'{backbone_cls.__name__}: pretrained'):
        model = backbone_cls(MICRO, pretrained='x.pth')
    assert model.init_cfg == dict(type='Pretrained', checkpoint='x.pth')


# -------------------------------------------------- V2: GRN, no layer scale
def test_v2_layer_scale_is_rejected():
    with pytest.raises(ValueError, match=r'ConvNeXtV2 has no layer scale '
                       r'\(layer_scale_init_value=1.0\)'):
        ConvNeXtV2(MICRO, layer_scale_init_value=1.0)
    assert ConvNeXtV2(MICRO, layer_scale_init_value=None).stages[0][0] \
        .gamma is None


def test_v2_blocks_have_grn_and_no_gamma():
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
def test_grn_statistics_are_per_sample(train):
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
