"""ConvNeXt V2 (Woo et al., CVPR 2023): presets, the network against two
independent formulations, the fast path's options, GRN under autocast and
per sample, checkpoints of every layout, layer-wise LR decay, the paper's
dense configs and a toy training run.

Micro presets at 32-64 px, except where a test is about a full preset
(parameter counts, built on the meta device).
"""
import itertools

import pytest
import torch

from convnext_backbone import GRN, ConvNeXt, ConvNeXtV2, out_channels
from convnext_backbone.blocks import onednn_fusion_available
from convnext_backbone.presets import (ARCH_SETTINGS, STRIDES,
                                       VERSION_PRESETS)
from helpers import (MICRO, assert_relatively_close,
                     assert_training_matches_reference, randomize_,
                     reference_forward_v2)
from tools.lib.reference import ReferenceConvNeXtV2

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
@pytest.mark.parametrize('out_indices', [(0, 1, 2, 3), (1, 3), (-1, )])
def test_forward_equals_functional_reference(out_indices):
    model = randomize_(ConvNeXtV2(MICRO, out_indices=out_indices)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outs = model(x)
        expected = reference_forward_v2(model.state_dict(), MICRO['depths'],
                                        model.out_indices, x)
    assert len(outs) == len(expected) == len(out_indices)
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-4)


def test_reference_module_is_the_papers_network():
    ref = randomize_(ReferenceConvNeXtV2(MICRO)).eval()
    x = torch.randn(*X_SHAPE)
    with torch.no_grad():
        outs = ref(x)
        expected = reference_forward_v2(ref.state_dict(), MICRO['depths'],
                                        (0, 1, 2, 3), x)
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-4)


def twins(seed=0, drop_path_rate=0.0, **kwargs):
    """A ConvNeXtV2 and a ReferenceConvNeXtV2 with the same random
    weights."""
    ref = randomize_(ReferenceConvNeXtV2(MICRO,
                                         drop_path_rate=drop_path_rate), seed)
    model = ConvNeXtV2(MICRO, drop_path_rate=drop_path_rate, **kwargs)
    missing, _ = model.load_state_dict(ref.state_dict(), strict=False)
    assert not missing
    return model, ref


@pytest.mark.parametrize(
    'channels_last,fused,out_indices',
    list(itertools.product((True, False), (True, False),
                           ((0, 1, 2, 3), (1, 3)))))
def test_inference_equals_reference(channels_last, fused, out_indices):
    model, ref = twins(channels_last=channels_last, fused_inference=fused,
                       out_indices=out_indices)
    model.eval(), ref.eval()
    x = torch.randn(*X_SHAPE)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            outs, expected = model(x), ref(x)
        assert len(outs) == len(out_indices)
        for out, i in zip(outs, out_indices):
            assert out.shape == expected[i].shape and out.is_contiguous()
            assert_relatively_close(out, expected[i])


@pytest.mark.parametrize(
    'channels_last,with_cp,drop_path_rate,frozen_stages',
    list(itertools.product((True, False), (False, True), (0.0, 0.3),
                           (-1, 1))))
def test_training_outputs_and_gradients_equal_reference(
        channels_last, with_cp, drop_path_rate, frozen_stages):
    model, ref = twins(channels_last=channels_last, with_cp=with_cp,
                       drop_path_rate=drop_path_rate,
                       frozen_stages=frozen_stages)
    ref.with_cp = with_cp
    grads = assert_training_matches_reference(model, ref, X_SHAPE,
                                              frozen_stages)
    assert all(grads[f'stages.3.0.grn.{p}'] is not None
               for p in ('gamma', 'beta'))


@pytest.mark.skipif(not onednn_fusion_available(),
                    reason='this torch has no oneDNN fused linear kernels')
def test_fused_kernels_run_in_inference():
    """GRN sits after GELU: the fused Linear + GELU and the fused Linear +
    residual add both still run."""
    model, ref = twins(fused_inference=True)
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


def test_model_under_bf16_autocast_close_to_reference():
    model, ref = twins()
    model.eval(), ref.eval()
    x = torch.randn(*X_SHAPE)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs, ref_amp = model(x), ref(x)
    with torch.no_grad():
        exact = ref(x)
    for out, amp, ex in zip(outs, ref_amp, exact):
        assert torch.isfinite(out.float()).all()
        # no further from the exact result than the reference's own bf16 run
        err = (out.float() - ex).abs().max()
        assert err <= 2 * (amp.float() - ex).abs().max() + 1e-2


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
