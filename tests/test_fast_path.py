"""The backbones' fast formulation (channels-last activations, gamma folded
into pwconv2, in-place and oneDNN-fused inference) against the plain
reference formulation: same outputs and gradients for every option
combination. The tests parametrized over ``version`` run ConvNeXt (V1)
and ConvNeXtV2, the others V1."""
import itertools

import pytest
import torch

from convnext_backbone.blocks import onednn_fusion_available
from tools.lib.reference import ReferenceConvNeXt
from helpers import (MICRO, VERSIONS, assert_relatively_close,
                     assert_inference_matches_reference,
                     assert_training_matches_reference, randomize_, twins)

X_SHAPE = (2, 3, 64, 96)


@pytest.mark.parametrize('version', sorted(VERSIONS))
def test_reference_module_is_the_papers_network(version):
    """The reference module itself equals the hand-written maths."""
    _, reference_cls, reference_forward = VERSIONS[version]
    ref = randomize_(reference_cls(MICRO)).eval()
    x = torch.randn(*X_SHAPE)
    with torch.no_grad():
        outs = ref(x)
        expected = reference_forward(ref.state_dict(), MICRO['depths'],
                                     (0, 1, 2, 3), x)
    for out, exp in zip(outs, expected):
        torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('version,layer_scale', [
    pytest.param(1, dict(layer_scale_init_value=1e-6), id='v1-gamma'),
    pytest.param(1, dict(layer_scale_init_value=0.0), id='v1-no_gamma'),
    pytest.param(2, {}, id='v2'),  # V2 has no layer scale
])
@pytest.mark.parametrize(
    'channels_last,fused,out_indices',
    list(itertools.product((True, False), (True, False),
                           ((0, 1, 2, 3), (1, 3)))))
def test_inference_equals_reference(version, layer_scale, channels_last,
                                    fused, out_indices):
    model, ref = twins(version, channels_last=channels_last,
                       fused_inference=fused, out_indices=out_indices,
                       **layer_scale)
    assert_inference_matches_reference(model, ref, X_SHAPE, out_indices)


@pytest.mark.parametrize('version', sorted(VERSIONS))
@pytest.mark.parametrize(
    'channels_last,with_cp,drop_path_rate,frozen_stages',
    list(itertools.product((True, False), (False, True), (0.0, 0.3),
                           (-1, 2))))
def test_training_outputs_and_gradients_equal_reference(
        version, channels_last, with_cp, drop_path_rate, frozen_stages):
    model, ref = twins(version, channels_last=channels_last,
                       with_cp=with_cp, drop_path_rate=drop_path_rate,
                       frozen_stages=frozen_stages)
    ref.with_cp = with_cp
    grads = assert_training_matches_reference(model, ref, X_SHAPE,
                                              frozen_stages)
    if version == 2:  # GRN is trained too (stage 3 is never frozen here)
        assert all(grads[f'stages.3.0.grn.{p}'] is not None
                   for p in ('gamma', 'beta'))


def test_frozen_stages_take_the_inference_path_while_training():
    """Blocks autograd does not record (frozen, input without grad) run the
    fused path even in a training step, and the result still matches."""
    model, ref = twins(frozen_stages=2, fused_inference=True)
    model.train()
    calls = []
    for stage in model.stages:
        for block in stage:
            block.register_forward_hook(
                lambda mod, inp, out: calls.append(out.requires_grad))
    model(torch.randn(*X_SHAPE))
    # stages 0 and 1 (2 blocks) frozen: no graph; stages 2-3 record
    assert calls == [False, False, True, True, True]


@pytest.mark.skipif(not onednn_fusion_available(),
                    reason='this torch has no oneDNN fused linear kernels')
@pytest.mark.parametrize('version', sorted(VERSIONS))
def test_fused_kernels_run_only_where_autograd_does_not_record(version):
    """In inference every block runs the fused kernels (V2's GRN sits after
    GELU: the fused Linear + GELU and Linear + residual add both still run)
    and computes what the reference does; never in training."""
    model, ref = twins(version, fused_inference=True)
    ref.eval()
    x = torch.randn(*X_SHAPE)

    def kernels(train: bool):
        model.train(train)
        with torch.profiler.profile() as prof, \
                torch.set_grad_enabled(train):
            outs = model(x)
        return outs, [e.name for e in prof.events()]

    outs, names = kernels(False)
    assert names.count('mkldnn::_linear_pointwise') >= sum(MICRO['depths'])
    with torch.no_grad():
        for out, exp in zip(outs, ref(x)):
            assert_relatively_close(out, exp)
    assert 'mkldnn::_linear_pointwise' not in kernels(True)[1]
    model.fused_inference = False
    for block in (b for s in model.stages for b in s):
        block.fused_inference = False
    assert 'mkldnn::_linear_pointwise' not in kernels(False)[1]


def test_folded_weights_follow_parameter_updates():
    """The cached gamma-folded pwconv2 is refreshed by an optimizer step
    and by load_state_dict, not served stale."""
    model, ref = twins()
    model.eval(), ref.eval()
    x = torch.randn(*X_SHAPE)
    with torch.no_grad():
        model(x)  # fills the caches
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.train()
    sum(o.square().mean() for o in model(x)).backward()
    optimizer.step()
    model.eval()
    ref.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        for out, exp in zip(model(x), ref(x)):
            assert_relatively_close(out, exp)
    other = randomize_(ReferenceConvNeXt(MICRO), seed=7).eval()
    model.load_state_dict(other.state_dict(), strict=False)
    with torch.no_grad():
        for out, exp in zip(model(x), other(x)):
            assert_relatively_close(out, exp)


@pytest.mark.parametrize('version', sorted(VERSIONS))
def test_bf16_autocast_close_to_reference(version):
    model, ref = twins(version)
    model.eval(), ref.eval()
    x = torch.randn(*X_SHAPE)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs, expected = model(x), ref(x)
    with torch.no_grad():
        exact = ref(x)
    for out, exp, ex in zip(outs, expected, exact):
        assert torch.isfinite(out.float()).all()
        # no further from the exact result than the reference's own bf16 run
        err = (out.float() - ex).abs().max()
        ref_err = (exp.float() - ex).abs().max()
        assert err <= 2 * ref_err + 1e-2


@pytest.mark.parametrize('version', sorted(VERSIONS))
def test_traced_and_exported_graphs_use_plain_ops(version):
    """jit tracing (the ONNX exporters' path) and torch.export record the
    plain ops (V2's GRN included), not the private fused kernels, and
    compute the same."""
    model, ref = twins(version)
    model.eval(), ref.eval()
    x = torch.randn(*X_SHAPE)
    with torch.no_grad():
        traced = torch.jit.trace(model, x, check_trace=False)
        expected = ref(x)
        outs = traced(x)
    assert 'mkldnn::_linear_pointwise' not in str(traced.inlined_graph)
    for out, exp in zip(outs, expected):
        assert_relatively_close(out, exp)
    exported = torch.export.export(model, (x, ))
    assert '_linear_pointwise' not in str(exported.graph)
    with torch.no_grad():
        for out, exp in zip(exported.module()(x), expected):
            assert_relatively_close(out, exp)
