"""Plain helpers shared by the test modules: micro presets, random weights,
the hand-written reference network, a weights hash, and the options that
shrink a paper config to a CPU step on toy data."""
import hashlib
import math
import os.path as osp
from typing import Any, Dict, Iterable

import torch
import torch.nn.functional as F
from mmengine.config import Config

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
