"""Convert a ConvNeXt checkpoint of any supported layout to this package's.

Uses the same pure function as ``init_cfg=dict(type='Pretrained')``
(:func:`convnext_backbone.checkpoint.convert_to_convnext`), so a converted
file loads with ``strict=True`` into ``ConvNeXt``.

Example::

    python tools/convert_checkpoint.py convnext_tiny_timm.pth tiny.pth
    python tools/convert_checkpoint.py in.pth out.pth --add-prefix backbone.
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from convnext_backbone.checkpoint import (  # noqa: E402
    convert_to_convnext, load_checkpoint_file)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official / mmpretrain / timm / '
                        'detector or segmentor checkpoint')
    parser.add_argument('dst', help='where to write {"state_dict": ...}')
    parser.add_argument('--prefix', default=None,
                        help='take only keys under this prefix (default: '
                        '"backbone." when present)')
    parser.add_argument('--add-prefix', default='',
                        help='prefix for the written keys, e.g. "backbone." '
                        'to load into a whole detector with load_from')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    state_dict = convert_to_convnext(
        load_checkpoint_file(args.src), prefix=args.prefix)
    if not state_dict:
        sys.exit(f'error: {args.src} holds no ConvNeXt weights')
    state_dict = {args.add_prefix + k: v for k, v in state_dict.items()}
    torch.save({'state_dict': state_dict}, args.dst)
    print(f'wrote {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
