"""Test-only hook, imported by training subprocesses through
``custom_imports``: every rank hashes its trainable weights after training,
so a test can check that all ranks (and the saved checkpoint) agree."""
import os.path as osp

from helpers import state_dict_sha256
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class WeightsHashHook(Hook):

    def after_train(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        params = dict(model.named_parameters())
        with open(osp.join(runner.work_dir, f'rank{get_rank()}.sha256'),
                  'w') as f:
            f.write(state_dict_sha256(params, list(params)))
