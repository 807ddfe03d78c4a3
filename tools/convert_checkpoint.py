"""Convert a ConvNeXt checkpoint of any supported layout to this package's.

Two kinds of input, told apart by their keys:

- a backbone / ImageNet checkpoint (official, mmpretrain, timm, FCMAE):
  converted with the same pure function as ``init_cfg=dict(type=
  'Pretrained')`` (:func:`convnext_backbone.checkpoint.convert_to_convnext`)
  and written as the backbone alone, which loads with ``strict=True`` into
  ``ConvNeXt`` (``--add-prefix backbone.`` to ``load_from`` it into a whole
  model);
- a whole detector / segmentor checkpoint (mmdet's and mmseg's zoos, the
  official dense repositories): the backbone's keys are renamed
  (:func:`convnext_backbone.checkpoint.rename_backbone_keys`), every other
  tensor and the ``meta`` (classes, palette) are kept.

Loading does not need this tool (the backbone converts any layout when a
checkpoint is loaded); it writes a file other tools can read as-is.

Example::

    python tools/convert_checkpoint.py convnext_tiny_timm.pth tiny.pth
    python tools/convert_checkpoint.py in.pth out.pth --add-prefix backbone.
    python tools/convert_checkpoint.py mmdet_zoo_mask_rcnn.pth ours.pth
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from convnext_backbone.checkpoint import (  # noqa: E402
    LAYOUTS, CheckpointError, convert_to_convnext, detect_layout,
    rename_backbone_keys, unwrap_state_dict)
from tools.lib.weights import (CheckpointFileError,  # noqa: E402
                               read_checkpoint)

# Keys of the parts of a detector or segmentor besides its backbone.
DENSE_PARTS = ('neck.', 'decode_head.', 'roi_head.', 'rpn_head.',
               'auxiliary_head.', 'bbox_head.', 'mask_head.')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official / mmpretrain / timm / '
                        'detector or segmentor checkpoint')
    parser.add_argument('dst', help='where to write {"state_dict": ...}')
    parser.add_argument('--prefix', default=None,
                        help='take only keys under this prefix (default: '
                        '"backbone." when present); a whole detector or '
                        'segmentor is kept whole unless this is given')
    parser.add_argument('--add-prefix', default='',
                        help='prefix for the written keys, e.g. "backbone." '
                        'to load into a whole detector with load_from')
    return parser.parse_args(argv)


def convert(checkpoint: dict, prefix=None, add_prefix: str = ''):
    """The converted checkpoint and a sentence saying what was found.

    Args:
        checkpoint (dict): The source file's content.
        prefix (str, optional): See ``--prefix``.
        add_prefix (str): See ``--add-prefix``.
    """
    state = {(k[7:] if k.startswith('module.') else k): v
             for k, v in unwrap_state_dict(checkpoint).items()}
    whole = (prefix is None and not add_prefix
             and any(k.startswith(DENSE_PARTS) for k in state))
    out = convert_to_convnext(state, prefix=prefix)
    if not out:
        raise CheckpointError('it holds no ConvNeXt weights (first keys: '
                              f"{', '.join(list(state)[:5])})")
    if whole:
        whole_state, layout, changed = rename_backbone_keys(state,
                                                            'backbone.')
        found = (f'a whole detector / segmentor checkpoint, backbone in the '
                 f'{layout} layout ({LAYOUTS[layout]}): {changed} tensors '
                 f'converted, {len(whole_state)} written')
        result = {'state_dict': whole_state}
        if isinstance(checkpoint.get('meta'), dict):
            result['meta'] = checkpoint['meta']
        return result, found
    layout = detect_layout(
        k[len('backbone.'):] if k.startswith('backbone.') else k
        for k in state)
    found = (f'a backbone checkpoint in the {layout} layout '
             f'({LAYOUTS[layout]}): {len(out)} backbone tensors written')
    return {'state_dict': {add_prefix + k: v for k, v in out.items()}}, found


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        result, found = convert(read_checkpoint(args.src), args.prefix,
                                args.add_prefix)
    except (CheckpointError, CheckpointFileError) as err:
        sys.exit(f'error: {args.src}: {err}')
    torch.save(result, args.dst)
    print(f'{args.src}: {found}; wrote {args.dst}')


if __name__ == '__main__':
    main()
