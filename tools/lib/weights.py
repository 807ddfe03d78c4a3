"""Reading a trained model's checkpoint for the tools that run it
(tools/test.py, tools/infer.py, tools/deploy.py): safely, and checked
against the model after the ConvNeXt backbones' layout conversion, so that
nothing is evaluated with a partly random model.

Reading goes through mmengine's ``CheckpointLoader`` (local files, URLs and
its other schemes) with ``weights_only=True``, on either stack: on
onedl-mmengine ``import convnext_backbone`` has replaced its loader, which
would otherwise retry without ``weights_only`` (convnext_backbone/compat.py).
"""
import copy
import importlib
import os.path as osp
from typing import Dict, Optional, Tuple

import torch
from mmengine.config import Config

from .cfg_walk import config_scope
from .errors import ConfigPrepareError


class CheckpointFileError(ConfigPrepareError):
    """A checkpoint is missing, unreadable or does not fit the model; the
    message names it and what to do."""


def read_checkpoint(path: str) -> dict:
    """The checkpoint file (or URL) as a dict, on CPU.

    Raises:
        CheckpointFileError: A missing or unreadable file (one that needs
            more than tensors and plain types to unpickle included).
    """
    import convnext_backbone  # noqa: F401 - the safe loader on both stacks
    from mmengine.runner import CheckpointLoader
    if '://' not in path and not osp.isfile(path):
        raise CheckpointFileError(f'checkpoint {path!r} does not exist')
    try:
        checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    except Exception as err:  # torch's unpickling errors have many types
        first = str(err).strip().splitlines()[0] if str(err).strip() else ''
        raise CheckpointFileError(
            f'cannot read checkpoint {path!r}: {type(err).__name__}: '
            f'{first}') from err
    if not isinstance(checkpoint, dict):
        raise CheckpointFileError(
            f'checkpoint {path!r} holds a {type(checkpoint).__name__}, not '
            'a state dict')
    return checkpoint


def model_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The model's tensors of a checkpoint (``state_dict`` of a Runner
    checkpoint, or a plain state dict), without a DDP ``module.`` prefix."""
    state = checkpoint.get('state_dict', checkpoint)
    return {(k[7:] if k.startswith('module.') else k): v
            for k, v in state.items() if isinstance(v, torch.Tensor)}


def checkpoint_mismatch(model: torch.nn.Module,
                        state: Dict[str, torch.Tensor]) -> Optional[str]:
    """What keeps ``state`` from loading strictly into ``model``, in a few
    words, or None when every key and shape agrees."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f'{k}: {tuple(state[k].shape)} in the checkpoint, '
              f'{expected[k]} in the model' for k in expected
              if k in state and tuple(state[k].shape) != expected[k]]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if shapes:
        parts.append(f'{len(shapes)} shape(s) differ (e.g. {shapes[0]})')
    if missing:
        parts.append(f'{len(missing)} model key(s) missing (e.g. '
                     f'{missing[0]})')
    if unexpected:
        parts.append(f'{len(unexpected)} unexpected key(s) (e.g. '
                     f'{unexpected[0]})')
    return '; '.join(parts)


def fitted_state_dict(model: torch.nn.Module, checkpoint: dict, path: str,
                      config: str) -> Dict[str, torch.Tensor]:
    """The checkpoint's model tensors as loading them into ``model`` will
    see them (ConvNeXt keys of mmpretrain's, timm's or the official layout
    converted by the backbones, :func:`convnext_backbone.convert_model_state_dict`),
    checked to fill the model exactly.

    Args:
        model (nn.Module): The built model (not a DDP wrapper).
        checkpoint (dict): What :func:`read_checkpoint` returned.
        path (str): The checkpoint's path, for the message.
        config (str): The config's path, for the message.

    Raises:
        CheckpointFileError: Some key or shape differs (the first one
            named), or the backbone's keys are of another ConvNeXt.
    """
    from convnext_backbone import CheckpointError, convert_model_state_dict
    try:
        state, _ = convert_model_state_dict(model, model_state_dict(checkpoint))
    except CheckpointError as err:
        raise CheckpointFileError(
            f'checkpoint {path!r} does not fit config {config!r}: {err}'
        ) from None
    mismatch = checkpoint_mismatch(model, state)
    if mismatch:
        raise CheckpointFileError(
            f'checkpoint {path!r} does not fit config {config!r}: '
            f'{mismatch}; give the checkpoint written by a run of this config '
            '(or of the mmdet / mmseg zoo config it corresponds to, '
            'docs/coming_from_mmpretrain.md)')
    return state


def check_checkpoint_fits(model: torch.nn.Module, path: str,
                          config: str) -> None:
    """Stop before a test evaluates a partly random model: the checkpoint
    must fill ``model`` exactly once converted (see
    :func:`fitted_state_dict`). The Runner's ``load_from`` loads with
    ``strict=False`` and would only log what it left out.

    Args:
        model (nn.Module): The Runner's model (a DDP wrapper is unwrapped).
        path (str): The checkpoint (path or URL).
        config (str): The config's path, for the message.

    Raises:
        CheckpointFileError: Missing, unreadable or not fitting.
    """
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(model):
        model = model.module
    fitted_state_dict(model, read_checkpoint(path), path, config)


def build_trained_model(cfg: Config, path: Optional[str]
                        ) -> Tuple[torch.nn.Module, Optional[dict]]:
    """The config's model (in its scope, SyncBN as BN, no ImageNet
    download) with a checkpoint loaded strictly, in eval mode.

    Args:
        cfg (Config): A detector or segmentor config.
        path (str, optional): The checkpoint; None keeps the random
            initialisation (tests of the tools).

    Returns:
        tuple: The model and the checkpoint dict (its ``meta`` holds the
        dataset's classes), or None without a checkpoint.

    Raises:
        CheckpointFileError: Missing, unreadable, or not this config's model
            (the first differing key or shape named).
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    scope = config_scope(cfg)
    init_default_scope(scope)
    import convnext_backbone  # noqa: F401 - registers the backbones
    models = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.pop('pretrained', None)
    if isinstance(model_cfg.get('backbone'), dict):
        model_cfg['backbone']['init_cfg'] = None  # the checkpoint has all
    checkpoint = read_checkpoint(path) if path is not None else None
    model = revert_sync_batchnorm(models.build(model_cfg))
    if checkpoint is not None:
        state = fitted_state_dict(model, checkpoint, path, cfg.filename)
        model.load_state_dict(state, strict=True)
    return model.eval(), checkpoint
