"""The inference switch (``convnext_backbone.inference``, ``--fast``):
conv-BN folding, the exact mode's predictions against eager on micro
detectors and segmentors, the reduced-precision modes, the refusals, the
hook and the test tool's option."""
import copy
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.registry import MODELS, DefaultScope

from convnext_backbone import ConvNeXt, FastInferenceHook
from convnext_backbone import inference
from convnext_backbone.inference import (check_fast_mode, fuse_conv_bn,
                                         optimize_for_inference)

from helpers import CONFIG_DIR, load, randomize_, tiny_options
from tools.lib.errors import ConfigPrepareError
from tools.lib.prepare import prepare_test_cfg


class ConvNormAct(nn.Module):
    """mmcv's ConvModule as the fusion sees it: ``conv`` registered before
    the norm, execution order in ``order``."""

    def __init__(self, order=('conv', 'norm', 'act')) -> None:
        super().__init__()
        self.order = order
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.act = nn.ReLU()

    def forward(self, x):
        for layer in self.order:
            x = getattr(self, dict(norm='bn').get(layer, layer))(x)
        return x


def random_bn_stats_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and BN running statistics, so that a folding error
    cannot hide behind BN's identity initialisation."""
    randomize_(model, seed)
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    return model


def test_fuse_conv_bn_folds_conv_then_norm_only():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        ConvNormAct(), ConvNormAct(order=('norm', 'conv', 'act')),
        nn.BatchNorm2d(4),  # after a module, not a conv: kept
        nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))).eval()
    random_bn_stats_(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)
        assert fuse_conv_bn(model) == 3
        actual = model(x)
    assert isinstance(model[1], nn.Identity)
    assert isinstance(model[3].bn, nn.Identity)
    assert isinstance(model[4].bn, nn.BatchNorm2d)  # norm first: kept
    assert isinstance(model[5], nn.BatchNorm2d)
    assert isinstance(model[6][1], nn.Identity)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_unknown_and_impossible_modes_name_the_fix(monkeypatch):
    with pytest.raises(ValueError, match="'fast'.*exact, bf16, fp16"):
        check_fast_mode('fast', 'cpu')
    with pytest.raises(ValueError, match="'fp16' needs a CUDA GPU.*bf16"):
        check_fast_mode('fp16', 'cpu')
    monkeypatch.setattr(inference, 'cpu_has_native_bf16', lambda: False)
    with pytest.raises(ValueError, match="'bf16' needs a CPU.*use exact.*"
                       "--emulated-bf16"):
        check_fast_mode('bf16', 'cpu')
    check_fast_mode('bf16', 'cpu', emulated_bf16=True)  # asked for
    check_fast_mode('exact', 'cpu')
    with pytest.raises(ValueError, match='choose one of'):
        FastInferenceHook(mode='int8')


# ------------------------------------------------------- micro models
def micro_cfg(name: str):
    """A paper config made micro (tiny_options)."""
    cfg = load(name)
    cfg.merge_from_dict(tiny_options(cfg))
    return cfg


def micro_model(name: str) -> nn.Module:
    """A paper config's model made micro (tiny_options), random weights and
    BN statistics, eval mode, in its scope."""
    cfg = micro_cfg(name)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = MODELS.build(cfg.model)
    model.init_weights()
    return random_bn_stats_(model, seed=1).eval()


def seg_batch(size: int = 64, seed: int = 0) -> dict:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(seed)
    sample = SegDataSample(metainfo=dict(
        img_shape=(size, size), ori_shape=(size, size),
        pad_shape=(size, size), scale_factor=(1.0, 1.0), flip=False))
    sample.gt_sem_seg = PixelData(data=torch.zeros(1, size, size).long())
    return dict(inputs=[torch.randint(0, 256, (3, size, size),
                                      generator=gen, dtype=torch.uint8)],
                data_samples=[sample])


def det_batch(shape=(96, 128)) -> dict:
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    return demo_mm_inputs(batch_size=1, image_shapes=(3, *shape),
                          num_items=[4], num_classes=80, with_mask=True)


def predict(model: nn.Module, batch: dict, scope: str) -> list:
    with DefaultScope.overwrite_default_scope(scope), torch.no_grad():
        return model.test_step(copy.deepcopy(batch))


def assert_relatively_close(actual, expected, tol=1e-4):
    scale = expected.abs().max().clamp_min(1e-6)
    error = ((actual.float() - expected.float()).abs().max() / scale).item()
    assert error <= tol, f'max relative error {error:.2e} > {tol:.0e}'


@pytest.fixture(scope='module')
def upernet():
    return micro_model('upernet_convnext_t_512')


@pytest.fixture(scope='module')
def mask_rcnn():
    return micro_model('mask_rcnn_convnext_t_1x')


def test_exact_segmentor_predicts_as_eager(upernet):
    model = copy.deepcopy(upernet)
    batch = seg_batch()
    expected = predict(model, batch, 'mmseg')[0]
    optimize_for_inference(model, 'exact')
    # every BN of UperNet's ConvModules folded
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    actual = predict(model, batch, 'mmseg')[0]
    assert_relatively_close(actual.seg_logits.data, expected.seg_logits.data)
    same = (actual.pred_sem_seg.data == expected.pred_sem_seg.data).float()
    assert same.mean().item() >= 0.999


def test_exact_hands_channels_last_features_to_the_heads(upernet):
    if not hasattr(upernet.backbone, 'contiguous_outputs'):
        pytest.skip('ConvNeXt.contiguous_outputs (the switch that keeps the '
                    "backbone's outputs channels-last) is not in this "
                    'checkout')
    model = optimize_for_inference(copy.deepcopy(upernet), 'exact')
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 64))
        # ...and takes the logits back to NCHW for mmseg's resize and
        # sliding-window sum (inference.nchw_logits)
        logits = model.decode_head(feats)
    assert all(f.is_contiguous(memory_format=torch.channels_last)
               for f in feats)
    assert logits.is_contiguous() and logits.shape[1] > 1
    assert not logits.is_contiguous(memory_format=torch.channels_last)


def test_exact_detector_predicts_as_eager(mask_rcnn):
    model = copy.deepcopy(mask_rcnn)
    batch = det_batch()
    expected = predict(model, batch, 'mmdet')[0].pred_instances
    optimize_for_inference(model, 'exact')
    actual = predict(model, batch, 'mmdet')[0].pred_instances
    assert len(expected) > 0
    assert torch.equal(actual.labels, expected.labels)
    assert_relatively_close(actual.bboxes, expected.bboxes)
    assert_relatively_close(actual.scores, expected.scores)
    same = (actual.masks == expected.masks).float()
    assert same.mean().item() >= 0.999


def test_without_the_switch_the_backbone_hands_over_nchw(upernet):
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = upernet.backbone(x)
    assert all(f.is_contiguous() for f in feats)


def test_bf16_runs_the_model_in_bf16(upernet, monkeypatch):
    # Without native bf16 oneDNN emulates it: slow (hence the refusal of
    # check_fast_mode), but the same arithmetic, so it is tested everywhere.
    monkeypatch.setattr(inference, 'cpu_has_native_bf16', lambda: True)
    model = copy.deepcopy(upernet)
    batch = seg_batch()
    expected = predict(model, batch, 'mmseg')[0]
    optimize_for_inference(model, 'bf16')
    dtypes = []
    model.decode_head.conv_seg.register_forward_hook(
        lambda m, i, out: dtypes.append(out.dtype))
    actual = predict(model, batch, 'mmseg')[0]
    assert dtypes == [torch.bfloat16]
    same = (actual.pred_sem_seg.data == expected.pred_sem_seg.data).float()
    assert same.mean().item() >= 0.9  # reduced precision: close, not equal
    # a second conversion is a no-op; another mode is refused
    assert optimize_for_inference(model, 'bf16') is model
    with pytest.raises(ValueError, match="already converted.*'bf16'"):
        optimize_for_inference(model, 'exact')


def test_bf16_detector_post_processes_in_fp32(mask_rcnn, monkeypatch):
    """Only the networks run in bf16: mmcv's CPU nms (RPN proposals, box
    NMS) would stop on bf16 boxes, and the predictions come out fp32."""
    from convnext_backbone.inference import network_modules
    assert [name for name, _ in network_modules(mask_rcnn)] == [
        'backbone', 'neck', 'rpn_head', 'roi_head.bbox_head',
        'roi_head.mask_head']
    monkeypatch.setattr(inference, 'cpu_has_native_bf16', lambda: True)
    model = copy.deepcopy(mask_rcnn)
    batch = det_batch()
    expected = predict(model, batch, 'mmdet')[0].pred_instances
    optimize_for_inference(model, 'bf16')
    dtypes = []
    model.roi_head.bbox_head.fc_cls.register_forward_hook(
        lambda m, i, out: dtypes.append(out.dtype))
    actual = predict(model, batch, 'mmdet')[0].pred_instances
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert actual.bboxes.dtype == actual.scores.dtype == torch.float32
    assert len(actual) > 0 and len(expected) > 0


def test_hook_converts_the_runners_model_before_testing(upernet):
    model = copy.deepcopy(upernet)
    runner = type('Runner', (), dict(model=model))()
    FastInferenceHook(mode='exact').before_test(runner)
    assert model._fast_inference_mode == 'exact'
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert isinstance(model.backbone, ConvNeXt)


def test_test_tool_option_adds_the_hook(monkeypatch, tmp_path):
    cfg = load('upernet_convnext_t_512')
    ckpt = tmp_path / 'ckpt.pth'
    torch.save(dict(state_dict={}), ckpt)
    prepared = prepare_test_cfg(cfg, str(ckpt), fast='exact',
                                check_data=False)
    assert prepared.custom_hooks[-1] == dict(type='FastInferenceHook',
                                             mode='exact')
    assert dict(type='RandomStateHook') in prepared.custom_hooks
    assert 'custom_hooks' not in cfg or all(
        h['type'] != 'FastInferenceHook' for h in cfg.custom_hooks)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(ConfigPrepareError, match='--fast fp16:.*CUDA'):
        prepare_test_cfg(cfg, str(ckpt), fast='fp16', check_data=False)
    # --emulated-bf16 reaches the hook, whose conversion then runs on a
    # CPU without native bf16
    prepared = prepare_test_cfg(cfg, str(ckpt), fast='bf16',
                                emulated_bf16=True, check_data=False)
    assert prepared.custom_hooks[-1] == dict(
        type='FastInferenceHook', mode='bf16', emulated_bf16=True)
    monkeypatch.setattr(inference, 'cpu_has_native_bf16', lambda: False)
    model = micro_model('upernet_convnext_t_512')
    runner = type('Runner', (), dict(model=model))()
    FastInferenceHook(mode='bf16', emulated_bf16=True).before_test(runner)
    assert model._fast_inference_mode == 'bf16'
    with pytest.raises(ValueError, match="'bf16' needs a CPU"):
        FastInferenceHook(mode='bf16').before_test(
            type('Runner', (), dict(model=micro_model(
                'upernet_convnext_t_512')))())


def test_runner_tests_with_the_hook_after_loading_weights(toy_ade, tmp_path):
    """prepare_test_cfg(fast='exact') through mmengine's Runner: the hook
    converts the model after the checkpoint is loaded, and the metrics are
    those of the eager run."""
    from helpers import toy_options
    from tools.lib.runner import build_runner
    cfg = load('upernet_convnext_t_512')
    options = {**toy_options(cfg, toy_ade), **tiny_options(cfg),
               'test_dataloader.dataset.indices': 1}
    model_cfg = copy.deepcopy(cfg)
    model_cfg.merge_from_dict(options)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(model_cfg.model)
    model.init_weights()
    ckpt = str(tmp_path / 'random.pth')
    torch.save(dict(state_dict=random_bn_stats_(model).state_dict()), ckpt)
    metrics = {}
    for fast in (None, 'exact'):
        runner = build_runner(prepare_test_cfg(
            cfg, ckpt, work_dir=str(tmp_path / str(fast)), fast=fast,
            cfg_options=options))
        metrics[fast] = runner.test()
        converted = getattr(runner.model, '_fast_inference_mode', None)
        assert converted == fast
    assert metrics['exact'] == pytest.approx(metrics[None], abs=1e-6)


def test_benchmark_rows_time_the_same_network(upernet):
    """benchmark.py model --fast none exact --onnxruntime: the exact row's
    tensor path computes eager's logits; the onnxruntime row is the
    deploy bundle (its predictions agree with eager's test_step), and its
    time split names the graph."""
    pytest.importorskip('onnxruntime')
    from tools.analysis.bench_fast import run_settings
    rows = run_settings(upernet, ['none', 'exact'], seg_batch(), 'mmseg',
                        torch.device('cpu'), iters=1, warmup=0,
                        onnxruntime=True,
                        cfg=micro_cfg('upernet_convnext_t_512'))
    assert list(rows) == ['none', 'exact', 'onnxruntime']
    assert rows['exact']['tensor_max_rel_error'] <= 1e-4
    assert rows['onnxruntime']['agreement'] >= 0.99
    assert rows['onnxruntime']['features_max_rel_error'] is None
    assert rows['onnxruntime']['split_ms']['onnx end2end'] > 0
    assert rows['none']['split_ms']['decode_head'] > 0


def test_benchmark_bundle_row_of_a_detector():
    """The onnxruntime row of a detector (the toy Mask R-CNN, random
    weights) on the benchmark's own synthetic batch: its detections agree
    with eager's test_step (the batch's metainfo describes an image at its
    original size)."""
    pytest.importorskip('onnxruntime')
    from tools.analysis.bench_fast import run_settings
    from tools.analysis.bench_model import load_model_config, synthetic_batch
    from tools.lib.deploy import build_model
    cfg = load_model_config(osp.join(CONFIG_DIR, 'toy',
                                     'mask_rcnn_convnext_atto_toy.py'))
    torch.manual_seed(0)
    model = build_model(cfg, None)
    data = synthetic_batch('mmdet', 3, 1, (128, 160))
    rows = run_settings(model, ['none'], data, 'mmdet', torch.device('cpu'),
                        iters=1, warmup=0, onnxruntime=True, cfg=cfg)
    assert rows['onnxruntime']['agreement'] >= 0.99
    assert rows['onnxruntime']['split_ms']['onnx end2end'] > 0
