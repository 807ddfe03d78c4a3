"""Other implementations of the ConvNeXt backbone (timm's, mmpretrain's),
timed beside this package's by ``tools/analysis/benchmark.py`` once their
features are checked equal to its own from the same weights."""
import contextlib
import importlib
import re
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

from convnext_backbone import ConvNeXt, ConvNeXtV2, convert_to_convnext
from tools.lib.measure import max_relative_error

PEER_TOLERANCE = 1e-4  # max relative error of a feature map in fp32
CONVNEXT_CLASSES = {1: ConvNeXt, 2: ConvNeXtV2}


def backbone_label(arch: str, version: int) -> str:
    """``ConvNeXt-<arch>`` or ``ConvNeXtV2-<arch>``."""
    return f"ConvNeXt{'V2' if version == 2 else ''}-{arch}"


class Peer(NamedTuple):
    """How to get one peer's backbone.

    ``module`` is imported to tell whether the peer is installed;
    ``build(arch, with_cp, version)`` returns its four-stage feature
    extractor of ConvNeXt V1 or V2;
    ``output_norms`` says whether its features end with a LayerNorm of their
    own (else the check applies this ConvNeXt's ``norm{i}`` to them, which
    the timed peer then does without).
    """
    module: str
    build: Callable[[str, bool, int], torch.nn.Module]
    output_norms: bool
    describe: str


def _build_timm(arch: str, with_cp: bool, version: int) -> torch.nn.Module:
    import timm
    v1 = dict(ls_init_value=1.0) if version == 1 else {}  # V2: none
    model = timm.create_model(
        f"convnext{'v2' if version == 2 else ''}_{arch}", pretrained=False,
        features_only=True, out_indices=(0, 1, 2, 3), **v1)
    if with_cp:
        model.set_grad_checkpointing(True)
    return model


def _build_mmpretrain(arch: str, with_cp: bool,
                      version: int) -> torch.nn.Module:
    from mmpretrain.models import ConvNeXt as MMPretrainConvNeXt
    # mmpretrain's V2 is its ConvNeXt with GRN and no layer scale.
    v2 = dict(use_grn=True, layer_scale_init_value=0.)
    return MMPretrainConvNeXt(
        arch=arch, out_indices=(0, 1, 2, 3), gap_before_final_norm=False,
        with_cp=with_cp,
        **(v2 if version == 2 else dict(layer_scale_init_value=1.0)))


PEERS: Dict[str, Peer] = {
    'timm': Peer('timm', _build_timm, False,
                 "timm.create_model('convnext[v2]_<arch>', "
                 'features_only=True)'),
    'mmpretrain': Peer(
        'mmpretrain.models', _build_mmpretrain, True,
        'mmpretrain.models.ConvNeXt(gap_before_final_norm=False[, '
        'use_grn=True])'),
}


def peer_names() -> Tuple[str, ...]:
    """The ``--peers`` choices: the names of :data:`PEERS`."""
    return tuple(PEERS)


def peer_unavailable(name: str) -> Optional[str]:
    """None if the peer imports here, else a one-line reason."""
    try:
        importlib.import_module(PEERS[name].module)
    except Exception as exc:  # ImportError, or a version check at import
        reason = f'{type(exc).__name__}: {str(exc).splitlines()[0]}'
        if 'torchvision' in reason:
            reason = ('needs torchvision, which does not import beside this '
                      f'torch ({reason})')
        return f'{name} not importable: {reason}'
    return None


def build_peer(name: str, arch: str, with_cp: bool = False,
               version: int = 1, seed: int = 0) -> torch.nn.Module:
    """The peer's backbone with random weights, the same for a seed: its
    own init, every 1-D tensor (norm affine, biases, layer scale, GRN,
    which starts at zero) then shifted by noise so that none is an
    identity and the equality check sees every tensor."""
    torch.manual_seed(seed)
    model = PEERS[name].build(arch, with_cp, version)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 1:
                param.add_(torch.randn(param.shape, generator=gen) * 0.1)
    return model


def peer_weights(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A peer's state dict under this ConvNeXt's names."""
    # timm's features_only model flattens the classifier's Sequentials
    # (stem.0 -> stem_0, stages.1 -> stages_1); convert_to_convnext knows
    # the classifier's names.
    state_dict = {
        re.sub(r'^(stem|stages)_(\d+)\.', r'\1.\2.', key): value
        for key, value in model.state_dict().items()
    }
    return convert_to_convnext(state_dict)


@contextlib.contextmanager
def _no_tf32():
    """fp32 matmuls and convolutions in full fp32 (CUDA's cuDNN uses TF32
    by default), for comparing outputs."""
    saved = (torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


def peer_feature_errors(ours: torch.nn.Module, peer: torch.nn.Module,
                        x: torch.Tensor,
                        output_norms: bool) -> List[float]:
    """Max relative error of each of ``ours``' features vs the peer's
    (fp32, eval mode, no TF32). Without ``output_norms`` the peer's
    features go through ``ours``' ``norm{i}`` first."""
    ours.eval()
    peer.eval()
    with torch.no_grad(), _no_tf32():
        actual = ours(x)
        expected = peer(x)
        if not output_norms:
            expected = [getattr(ours, f'norm{i}')(feature)
                        for i, feature in enumerate(expected)]
    if len(actual) != len(expected):
        raise ValueError(f'{len(expected)} outputs, this ConvNeXt has '
                         f'{len(actual)}')
    return [max_relative_error(a, e) for a, e in zip(actual, expected)]


def check_peer(name: str, arch: str, shape, device: torch.device,
               version: int = 1) -> Dict[str, object]:
    """Whether the peer computes what this ConvNeXt does: its random
    weights converted with ``convert_to_convnext`` into a ConvNeXt (or
    ConvNeXtV2), the features of both compared on two random images.

    Returns:
        dict: ``status`` ('ok', 'refused' or 'unavailable'), ``note`` (one
        line) and, where compared, ``max_relative_errors``.
    """
    reason = peer_unavailable(name)
    if reason is not None:
        return dict(status='unavailable', note=f'{reason}; not timed')
    label = backbone_label(arch, version)
    try:
        peer = build_peer(name, arch, version=version).to(device)
    except Exception as exc:  # e.g. a preset the peer does not define
        return dict(status='unavailable', note=(
            f'{name} cannot build {label}: {type(exc).__name__}: '
            f'{str(exc).splitlines()[0]}; not timed'))
    ours = CONVNEXT_CLASSES[version](arch)
    try:
        missing, unexpected = ours.load_state_dict(peer_weights(peer),
                                                   strict=False)
    except RuntimeError as exc:  # shapes differ
        return dict(status='refused', note=(
            f'{name} refused: its weights do not fit {label} '
            f'({str(exc).splitlines()[1].strip()}); not timed'))
    # Without output norms of its own the peer leaves ours' norm{i} as
    # they are: the check applies them to both.
    missing = [k for k in missing
               if PEERS[name].output_norms or not re.match(r'norm\d\.', k)]
    if missing or unexpected:
        return dict(status='refused', note=(
            f'{name} refused: its weights do not map onto {label} '
            f'(missing {missing[:3]}, unexpected {unexpected[:3]}); not '
            'timed'))
    x = torch.randn(2, 3, *shape, device=device)
    errors = peer_feature_errors(ours.to(device), peer, x,
                                 PEERS[name].output_norms)
    worst = max(errors)
    if not worst <= PEER_TOLERANCE:  # NaN too
        return dict(status='refused', max_relative_errors=errors, note=(
            f'{name} refused: its {label} features differ from this '
            f'package\'s from the same weights (max relative error '
            f'{worst:.1e} > {PEER_TOLERANCE:.0e}); not timed'))
    norms = ('' if PEERS[name].output_norms else
             ' after this ConvNeXt\'s output LayerNorms, which the timed '
             'peer does without')
    return dict(status='ok', max_relative_errors=errors, note=(
        f'{name} ({PEERS[name].describe}): {label} features equal this '
        f'package\'s from the same weights{norms} (max relative error '
        f'{worst:.1e}, fp32); timed'))
