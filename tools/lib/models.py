"""Building a config's model for the analysis tools."""
import copy
import importlib

import torch
from mmengine.config import Config

from .cfg_walk import config_scope


def build_model_without_weights(cfg: Config) -> torch.nn.Module:
    """The config's model, built in its scope (mmdet or mmseg) on CPU with
    SyncBN as BN and the backbone's ``init_cfg`` dropped, so nothing is
    downloaded (the analysis tools need shapes and speed, not weights).

    Raises:
        ConfigPrepareError: ``default_scope`` is neither mmdet nor mmseg.
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    scope = config_scope(cfg)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    init_default_scope(scope)
    models = importlib.import_module(f'{scope}.registry').MODELS
    return revert_sync_batchnorm(models.build(model_cfg))

