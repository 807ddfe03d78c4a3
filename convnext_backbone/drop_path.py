"""Stochastic depth (Huang et al., ECCV 2016) of a residual branch.

Owned here rather than imported from mmcv, whose ``DropPath`` was the
package's only use of mmcv: without it ``import convnext_backbone`` needs
only torch and mmengine. The arithmetic is mmcv's and timm's (``drop_path``
of ``timm/layers/drop.py``), draw for draw, so a seeded run drops the same
samples and gives the same numbers as with mmcv's class.
"""
import torch
import torch.nn as nn


def drop_path(x: torch.Tensor,
              drop_prob: float = 0.,
              training: bool = False) -> torch.Tensor:
    """Zero whole samples of a residual branch, scale the kept ones.

    Args:
        x (Tensor): The branch, batch first, any number of dimensions.
        drop_prob (float): Probability that a sample's branch is zeroed.
            Defaults to 0.
        training (bool): Drop only in training; in eval ``x`` is returned
            as it is. Defaults to False.

    Returns:
        Tensor: ``x`` itself in eval or when ``drop_prob`` is 0, else ``x``
        with each sample kept with probability ``1 - drop_prob`` and
        scaled by ``1 / (1 - drop_prob)``, so its expectation is ``x``.
    """
    if drop_prob == 0. or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0], ) + (1, ) * (x.ndim - 1)
    # floor(keep_prob + U[0, 1)) is 1 with probability keep_prob: one draw
    # per sample, in x's dtype and device as mmcv and timm draw it.
    random_tensor = keep_prob + torch.rand(
        shape, dtype=x.dtype, device=x.device)
    return x.div(keep_prob) * random_tensor.floor()


class DropPath(nn.Module):
    """Stochastic depth per sample, the module form of :func:`drop_path`.

    Args:
        drop_prob (float): Probability that a sample's branch is zeroed, in
            [0, 1). Defaults to 0.1 (mmcv's default).
    """

    def __init__(self, drop_prob: float = 0.1) -> None:
        super().__init__()
        if not 0 <= drop_prob < 1:
            raise ValueError(
                f'drop_prob={drop_prob!r} is outside [0, 1): 1 would drop '
                'every sample and divide by zero; use e.g. 0.1, or 0 for no '
                'stochastic depth')
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob:g}'
