"""ConvNeXt backbone: presets, outputs, reference equality (V1 and V2),
options, errors."""

import pytest
import torch

from convnext_backbone import ARCH_SETTINGS, ConvNeXt
from convnext_backbone.presets import STRIDES, VERSION_PRESETS
from helpers import MICRO, VERSIONS, randomize_

def expected_trunk_params(depths, dims, in_chans=3, out_norms=4):
    """Parameter count written from the paper's description of each layer."""
    n = in_chans * 16 * dims[0] + dims[0] + 2 * dims[0]  # stem conv + LN
    for i in range(1, 4):  # LN + 2x2 conv
        n += 2 * dims[i - 1] + 4 * dims[i - 1] * dims[i] + dims[i]
    for d, c in zip(depths, dims):
        block = (49 * c + c) + 2 * c + (c * 4 * c + 4 * c) + \
            (4 * c * c + c) + c
        n += d * block
    return n + sum(2 * c for c in dims[4 - out_norms:])


# Classification totals (1000-class head + final norm) as published by timm /
# the paper: T 28.59M, S 50.22M, B 88.59M, L 197.77M, XL 350.20M.
PUBLISHED_M = dict(tiny=28.59, small=50.22, base=88.59, large=197.77,
                   xlarge=350.20)


@pytest.mark.parametrize('arch', VERSION_PRESETS[1])
def test_preset_parameter_counts(arch):
    with torch.device('meta'):  # no memory, no init: counts only
        model = ConvNeXt(arch)
    n = sum(p.numel() for p in model.parameters())
    depths, dims = ARCH_SETTINGS[arch]['depths'], ARCH_SETTINGS[arch]['dims']
    assert n == expected_trunk_params(depths, dims)
    assert model.out_channels == dims
    assert model.out_strides == STRIDES
    if arch in PUBLISHED_M:
        classifier = n - 2 * sum(dims) + 2 * dims[3] + dims[3] * 1000 + 1000
        assert round(classifier / 1e6, 2) == PUBLISHED_M[arch]


@pytest.mark.parametrize('arch', ['atto', 'femto', 'pico', 'nano'])
def test_small_presets_forward(arch):
    model = ConvNeXt(arch).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 96))
    dims = ARCH_SETTINGS[arch]['dims']
    assert [tuple(o.shape) for o in outs] == [
        (1, c, 64 // s, 96 // s) for c, s in zip(dims, STRIDES)]


def test_aliases_and_custom_arch():
    assert ConvNeXt('T', out_indices=(3, )).depths == (3, 3, 9, 3)
    model = ConvNeXt(dict(depths=[1, 1, 1, 1], dims=[4, 8, 12, 16]))
    assert model.out_channels == (4, 8, 12, 16)


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


@pytest.mark.parametrize('frozen_stages', [0, 2])
def test_frozen_stages_unchanged_after_step(frozen_stages):
    model = randomize_(
        ConvNeXt(MICRO, frozen_stages=frozen_stages, drop_path_rate=0.3))
    model.train()
    frozen = [m for i in range(frozen_stages + 1)
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
            int(parts[1]) <= frozen_stages
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


@pytest.mark.parametrize('kwargs, fragment', [
    (dict(arch='tiyn'), "unknown ConvNeXt arch 'tiyn'"),
    (dict(arch=dict(depths=[1, 1, 1], dims=[8, 16, 32, 64])),
     'depths=[1, 1, 1]'),
    (dict(arch=dict(depth=[1, 1, 1, 1], dims=[8, 16, 32, 64])),
     "unknown: ['depth']"),
    (dict(out_indices=(0, 4)), 'out_indices entry 4'),
    (dict(out_indices=(-5, )), 'out_indices entry -5'),
    (dict(out_indices=(1, -3)), 'names a stage twice'),
    (dict(frozen_stages=4), 'frozen_stages=4'),
    (dict(drop_path_rate=1.0), 'drop_path_rate=1.0'),
    (dict(drop_path_rate=-0.1), 'drop_path_rate=-0.1'),
])
def test_bad_arguments_name_the_value(kwargs, fragment):
    kwargs.setdefault('arch', MICRO)
    with pytest.raises(ValueError) as err:
        ConvNeXt(**kwargs)
    assert fragment in str(err.value)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_built_from_config_under_each_scope(scope):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config(dict(custom_imports=dict(imports=['convnext_backbone']),
                      backbone=dict(type='ConvNeXt', arch=MICRO)))
    init_default_scope(scope)
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    model = registry.build(cfg.backbone)
    assert isinstance(model, ConvNeXt)
    assert registry.get('ConvNeXt') is ConvNeXt
