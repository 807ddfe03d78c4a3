"""Plain helpers shared by the test modules: micro presets, random weights,
the hand-written reference networks, backbones paired with their reference
module, a weights hash, the messages a logger emits, and the options that
shrink a paper config to a CPU step on toy data."""
import contextlib
import hashlib
import importlib
import logging
import math
import os.path as osp
from typing import Any, Dict, Iterable, Iterator, List, Tuple

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

from convnext_backbone import ConvNeXt, ConvNeXtV2

from tools.lib.reference import ReferenceConvNeXt, ReferenceConvNeXtV2
from tools.lib.toy_data import TOY_DET_CLASSES

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'configs')

MICRO = dict(depths=(1, 1, 2, 1), dims=(8, 16, 32, 64))


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every tensor (LN affine and gamma included) a random value, so a
    reference computation cannot pass by accident of ones/zeros init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 +
                    (1.0 if p.ndim == 1 else 0.0))
    return model


def reference_forward(sd, depths, out_indices, x):
    """ConvNeXt written out with functional ops from a state dict."""

    def ln_channels(x, prefix):  # LayerNorm over C of NCHW, by hand
        mean = x.mean(1, keepdim=True)
        var = ((x - mean)**2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + 1e-6)
        return x * sd[prefix + '.weight'][:, None, None] + \
            sd[prefix + '.bias'][:, None, None]

    outs = []
    for i in range(4):
        if i == 0:
            x = F.conv2d(x, sd['downsample_layers.0.0.weight'],
                         sd['downsample_layers.0.0.bias'], stride=4)
            x = ln_channels(x, 'downsample_layers.0.1')
        else:
            x = ln_channels(x, f'downsample_layers.{i}.0')
            x = F.conv2d(x, sd[f'downsample_layers.{i}.1.weight'],
                         sd[f'downsample_layers.{i}.1.bias'], stride=2)
        for b in range(depths[i]):
            p = f'stages.{i}.{b}.'
            y = F.conv2d(x, sd[p + 'dwconv.weight'], sd[p + 'dwconv.bias'],
                         padding=3, groups=x.shape[1])
            y = ln_channels(y, p + 'norm')
            # 1x1 convs == Linear over channels
            y = F.conv2d(y, sd[p + 'pwconv1.weight'][:, :, None, None],
                         sd[p + 'pwconv1.bias'])
            y = 0.5 * y * (1 + torch.erf(y / math.sqrt(2)))  # exact GELU
            y = F.conv2d(y, sd[p + 'pwconv2.weight'][:, :, None, None],
                         sd[p + 'pwconv2.bias'])
            x = x + sd[p + 'gamma'][:, None, None] * y
        if i in out_indices:
            outs.append(ln_channels(x, f'norm{i}'))
    return outs


def state_dict_sha256(state_dict: Dict[str, torch.Tensor],
                      names: Iterable[str]) -> str:
    """sha256 over the named tensors, in name order."""
    sha = hashlib.sha256()
    for name in sorted(names):
        sha.update(name.encode())
        sha.update(state_dict[name].detach().cpu().contiguous().numpy()
                   .tobytes())
    return sha.hexdigest()


class LogCollector(logging.Handler):
    """Keeps every record it handles, of every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.DEBUG) -> List[str]:
        """The messages of the records at ``level`` or above."""
        return [r.getMessage() for r in self.records if r.levelno >= level]


@contextlib.contextmanager
def captured_logs(logger: logging.Logger) -> Iterator[LogCollector]:
    """What ``logger`` emits inside the ``with`` block (a handler on it for
    the block only, removed even when the block raises)."""
    handler = LogCollector()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


# ------------------------------------------- shrinking a paper config
TINY_DIMS = [8, 16, 32, 64]
TINY_ARCH = dict(depths=[1, 1, 1, 1], dims=TINY_DIMS)
SHRINK = 8  # image scales, crops and strides of the step tests


def load(name: str) -> Config:
    return Config.fromfile(osp.join(CONFIG_DIR, f'{name}.py'))


def shrunk(node: Any) -> Any:
    """Pipeline copy with every scale, scales entry and crop size / SHRINK."""

    def div(value):
        if isinstance(value, (list, tuple)) and value and isinstance(
                value[0], (list, tuple)):
            return [div(v) for v in value]
        return tuple(max(1, int(v) // SHRINK) for v in value)

    if isinstance(node, dict):
        return {
            k: div(v) if k in ('scale', 'scales', 'crop_size') else shrunk(v)
            for k, v in node.items()
        }
    if isinstance(node, (list, tuple)):
        return [shrunk(v) for v in node]
    return node


def per_stage(head: Any, prefix: str, key: str,
               value: Any) -> Dict[str, Any]:
    """``prefix.key`` for one head, ``prefix.<i>.key`` for a list of them."""
    if isinstance(head, (list, tuple)):
        return {f'{prefix}.{i}.{key}': value for i in range(len(head))}
    return {f'{prefix}.{key}': value}


def toy_options(cfg: Config, root: str) -> Dict[str, Any]:
    """--cfg-options that point a paper config at a toy data set."""
    opts: Dict[str, Any] = {}
    if cfg.default_scope == 'mmdet':
        for phase, split in (('train', 'train'), ('val', 'val'), ('test',
                                                                  'val')):
            key = f'{phase}_dataloader.dataset'
            opts[f'{key}.data_root'] = root
            opts[f'{key}.ann_file'] = f'annotations/instances_{split}.json'
            opts[f'{key}.data_prefix'] = dict(img=f'{split}/')
            opts[f'{key}.metainfo'] = dict(classes=TOY_DET_CLASSES)
        for phase in ('val', 'test'):
            opts[f'{phase}_evaluator.ann_file'] = osp.join(
                root, 'annotations', 'instances_val.json')
        roi_head = cfg.model.roi_head
        num = len(TOY_DET_CLASSES)
        opts.update(
            per_stage(roi_head.bbox_head, 'model.roi_head.bbox_head',
                       'num_classes', num))
        opts['model.roi_head.mask_head.num_classes'] = num
    else:  # ADE layout; ADE20KDataset keeps its 150 classes
        for phase in ('train', 'val', 'test'):
            opts[f'{phase}_dataloader.dataset.data_root'] = root
    return opts


def narrowed_heads(model: dict) -> Dict[str, int]:
    """``model.<path>`` -> width / 16 for every 256 / 512 / 1024-wide
    ``*channels`` setting outside the backbone (FPN, RPN, RoI extractors,
    box / mask / decode heads): same structure, a fraction of the work."""
    opts = {}

    def walk(node, path):
        items = node.items() if isinstance(node, dict) else enumerate(
            node) if isinstance(node, (list, tuple)) else ()
        for key, value in items:
            sub = f'{path}.{key}'
            if (isinstance(key, str) and key.endswith('channels')
                    and value in (256, 512, 1024)):
                opts[sub] = value // 16
            else:
                walk(value, sub)

    for key, value in model.items():
        if key not in ('backbone', 'data_preprocessor'):
            walk(value, f'model.{key}')
    return opts


def tiny_options(cfg: Config) -> Dict[str, Any]:
    """--cfg-options for a fast CPU run: micro backbone, heads 1/16 wide,
    scales / SHRINK, few RoIs, no worker processes, one epoch / iteration,
    no checkpoint."""
    opts: Dict[str, Any] = narrowed_heads(cfg.model)
    opts.update({
        'model.backbone.arch': dict(_delete_=True, **TINY_ARCH),
        'model.backbone.init_cfg': None,
        # L of the lr-decay rule for depths[2] == 1
        'optim_wrapper.paramwise_cfg.num_layers': 4,
        'log_level': 'WARNING',
        'default_hooks.checkpoint': None,
    })
    for phase in ('train', 'val', 'test'):
        loader = f'{phase}_dataloader'
        opts[f'{loader}.num_workers'] = 0
        opts[f'{loader}.persistent_workers'] = False
        opts[f'{loader}.dataset.pipeline'] = shrunk(
            cfg[loader].dataset.pipeline)
    if 'tta_pipeline' in cfg:
        opts['tta_pipeline'] = shrunk(cfg.tta_pipeline)
    if cfg.default_scope == 'mmdet':
        opts['model.neck.in_channels'] = TINY_DIMS
        opts['model.train_cfg.rpn_proposal.max_per_img'] = 100
        opts.update(
            per_stage(cfg.model.train_cfg.rcnn, 'model.train_cfg.rcnn',
                       'sampler.num', 16))
        opts['model.test_cfg.rpn.max_per_img'] = 100
        opts['model.test_cfg.rcnn.max_per_img'] = 5
        opts['train_cfg.max_epochs'] = 1
    else:
        crop = cfg.model.test_cfg.crop_size[0] // SHRINK
        stride = cfg.model.test_cfg.stride[0] // SHRINK
        opts.update({
            'model.decode_head.in_channels': TINY_DIMS,
            'model.auxiliary_head.in_channels': TINY_DIMS[2],
            'model.data_preprocessor.size': (crop, crop),
            'model.test_cfg.crop_size': (crop, crop),
            'model.test_cfg.stride': (stride, stride),
            'train_cfg.max_iters': 1,
            'train_cfg.val_interval': 1,
        })
    return opts


# ------------------------------------------------------------ ConvNeXt V2
def reference_forward_v2(sd, depths, out_indices, x):
    """ConvNeXt V2 written out with functional ops from a state dict: NHWC
    throughout, ``F.layer_norm`` over the last dim, matrix products for the
    pointwise layers and GRN from the paper's formulas (Woo et al., CVPR
    2023, Eq. 1-3: L2 norm over H, W; divided by its channel mean + 1e-6;
    ``gamma * (x * N) + beta + x``). Another formulation than both the
    backbone's and ``reference_forward``'s, from the same state dict."""

    def conv(h, key, **kwargs):  # NHWC in and out
        return F.conv2d(h.permute(0, 3, 1, 2), sd[key + '.weight'],
                        sd[key + '.bias'], **kwargs).permute(0, 2, 3, 1)

    def layer_norm(h, key):
        return F.layer_norm(h, h.shape[-1:], sd[key + '.weight'],
                            sd[key + '.bias'], eps=1e-6)

    def grn(h, key):
        norm = h.square().sum(dim=(1, 2), keepdim=True).sqrt()
        ratio = norm / (norm.mean(dim=-1, keepdim=True) + 1e-6)
        return sd[key + '.gamma'] * (h * ratio) + sd[key + '.beta'] + h

    h = x.permute(0, 2, 3, 1)
    outs = []
    for i in range(4):
        if i == 0:
            h = layer_norm(conv(h, 'downsample_layers.0.0', stride=4),
                           'downsample_layers.0.1')
        else:
            h = conv(layer_norm(h, f'downsample_layers.{i}.0'),
                     f'downsample_layers.{i}.1', stride=2)
        for b in range(depths[i]):
            p = f'stages.{i}.{b}.'
            y = conv(h, p + 'dwconv', padding=3, groups=h.shape[-1])
            y = layer_norm(y, p + 'norm') @ sd[p + 'pwconv1.weight'].T + \
                sd[p + 'pwconv1.bias']
            y = grn(F.gelu(y), p + 'grn')
            h = h + y @ sd[p + 'pwconv2.weight'].T + sd[p + 'pwconv2.bias']
        if i in out_indices:
            outs.append(layer_norm(h, f'norm{i}').permute(0, 3, 1, 2))
    return outs


# version -> the backbone, its reference module (tools.lib.reference) and
# its functional formulation (above)
VERSIONS = {
    1: (ConvNeXt, ReferenceConvNeXt, reference_forward),
    2: (ConvNeXtV2, ReferenceConvNeXtV2, reference_forward_v2),
}


def twins(version: int = 1,
          seed: int = 0,
          **kwargs) -> Tuple[ConvNeXt, ReferenceConvNeXt]:
    """A micro backbone of ``version`` (see :data:`VERSIONS`) and its
    reference module with the same random weights.

    Args:
        version (int): 1 (ConvNeXt) or 2 (ConvNeXtV2). Defaults to 1.
        seed (int): Seed of the weights. Defaults to 0.
        **kwargs: Backbone arguments; ``drop_path_rate`` and (V1)
            ``layer_scale_init_value`` go to the reference module too.

    Returns:
        tuple: The backbone and the reference module.
    """
    backbone_cls, reference_cls, _ = VERSIONS[version]
    # what the reference takes as well: both must build the same network
    shared = {
        key: kwargs.pop(key)
        for key in ('drop_path_rate', 'layer_scale_init_value')
        if key in kwargs
    }
    ref = randomize_(reference_cls(MICRO, **shared), seed)
    model = backbone_cls(MICRO, **shared, **kwargs)
    missing, _ = model.load_state_dict(ref.state_dict(), strict=False)
    assert not missing
    return model, ref


def assert_relatively_close(actual, expected, tol=1e-4):
    """Max abs error, relative to the expected tensor's max abs value."""
    scale = expected.abs().max().clamp_min(1e-6)
    err = (actual - expected).abs().max() / scale
    assert err < tol, f'relative error {err:.2e} > {tol:.0e}'


def assert_inference_matches_reference(model, ref, x_shape, out_indices):
    """Inference of a backbone and of its reference formulation with the
    same weights, under ``no_grad`` and ``inference_mode``: the requested
    outputs, NCHW-contiguous, equal the reference's."""
    model.eval(), ref.eval()
    x = torch.randn(*x_shape)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            outs, expected = model(x), ref(x)
        assert len(outs) == len(out_indices)
        for out, i in zip(outs, out_indices):
            assert out.shape == expected[i].shape and out.is_contiguous()
            assert_relatively_close(out, expected[i])


def assert_training_matches_reference(model, ref, x_shape, frozen_stages=-1):
    """One training forward/backward of a backbone and of its reference
    formulation with the same weights: the same samples dropped (one seed),
    the same tensors frozen (the reference's frozen stages in eval), fixed
    cotangents; outputs and gradients (input and parameters) must agree."""
    ours = dict(model.named_parameters())
    for name, param in ref.named_parameters():  # freeze the same tensors
        param.requires_grad = ours[name].requires_grad
    for i in range(max(frozen_stages, 0)):  # the reference has no freezing
        ref.stages[i].eval(), ref.downsample_layers[i].eval()
    model.train()
    x = torch.randn(*x_shape, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    grad_out = [torch.randn_like(o) for o in ref(x_ref)]  # fixed cotangents
    x_ref.grad = None
    results = []
    for net, inp in ((model, x), (ref, x_ref)):
        torch.manual_seed(1)  # the same samples dropped in both
        net.zero_grad(set_to_none=True)
        outs = net(inp)
        torch.autograd.backward(outs, grad_out)
        results.append((outs, inp.grad,
                        {n: p.grad for n, p in net.named_parameters()}))
    (outs, x_grad, grads), (ref_outs, ref_x_grad, ref_grads) = results
    for out, exp in zip(outs, ref_outs):
        assert_relatively_close(out, exp)
    assert_relatively_close(x_grad, ref_x_grad, 1e-3)
    for name, grad in grads.items():
        if grad is None:  # frozen
            assert ref_grads[name] is None, name
            continue
        assert_relatively_close(grad, ref_grads[name], 1e-3)
    return grads


def shipped(package: str, path: str) -> Config:
    """A config as an OpenMMLab package (mmdet, mmseg, mmpose, mmpretrain)
    ships it inside its installed package (``.mim/configs/<path>``)."""
    module = importlib.import_module(package)
    return Config.fromfile(
        osp.join(osp.dirname(module.__file__), '.mim', 'configs', path))


def step_and_predict(model_cfg, optim_wrapper_cfg, scope: str, batch):
    """Build a model in ``scope`` (its backbone must be this package's
    ConvNeXt) and initialise its weights as the Runner does, one
    ``train_step`` through the config's optim wrapper with a finite loss,
    then ``test_step`` on the same batch; the predictions.

    ``init_weights`` matters: some heads allocate parameters with
    ``torch.Tensor(n)`` and fill them only there (Deformable DETR's
    ``level_embed``); left out, whatever was in that memory, NaN included,
    goes into the loss."""
    from mmengine.optim import build_optim_wrapper
    with DefaultScope.overwrite_default_scope(scope):
        model = MODELS.build(model_cfg)
        assert isinstance(model.backbone, ConvNeXt)
        model.init_weights()
        optim_wrapper = build_optim_wrapper(model, optim_wrapper_cfg)
        model.train()
        losses = model.train_step(batch, optim_wrapper)
        assert torch.isfinite(losses['loss']), losses
        model.eval()
        with torch.no_grad():
            return model.test_step(batch)
