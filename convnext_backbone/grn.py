"""Global Response Normalization (ConvNeXt V2), with fp32 statistics.

Woo et al., "ConvNeXt V2: Co-designing and Scaling ConvNets with Masked
Autoencoders", CVPR 2023, Section 4 and Algorithm 1; official code
facebookresearch/ConvNeXt-V2 ``models/utils.py`` (``GRN``).
"""
import torch
import torch.nn as nn


class GRN(nn.Module):
    """GRN over the channels of an NHWC tensor.

    Per sample and channel, ``Gx`` is the L2 norm over H and W and
    ``Nx = Gx / (mean of Gx over channels + eps)``; the output is
    ``gamma * (x * Nx) + beta + x``. Nothing is reduced over the batch, so
    a sample's output does not depend on the others (batch size 1 is fine),
    but it does depend on the whole feature map, padding included.

    Computed as ``x * (1 + gamma * Nx) + beta``: the scale is a tiny
    ``(N, 1, 1, C)`` tensor, so the activations are read and written once
    (the official expression makes four passes). The statistics and this
    product are computed in fp32, also under autocast (a sum of squares of
    fp16/bf16 activations overflows or loses precision), and the result is
    cast back to the input dtype, as :class:`~.layernorm.LayerNormLast` does.

    ``gamma`` and ``beta`` are ``(C,)`` like timm's and mmpretrain's, not the
    official ``(1, 1, 1, C)``: 1-D, they get no weight decay under the
    OpenMMLab rule (``ndim == 1``), which is what the official code ends up
    doing by name. :func:`~convnext_backbone.checkpoint.convert_to_convnext`
    reshapes official files.

    Args:
        dim (int): Number of channels (``4 * C`` in a ConvNeXt V2 block).
        eps (float): Added to the channel mean of ``Gx``. Defaults to 1e-6,
            as hard-coded in the official code.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        # Zero init: GRN starts as the identity (paper, Section 4).
        self.gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Normalise ``x`` (N, H, W, C), in place if ``inplace`` and ``x`` is
        fp32 (for callers that autograd does not record)."""
        dtype = x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            x32 = x.float()
            gx = torch.linalg.vector_norm(x32, dim=(1, 2), keepdim=True)
            nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
            scale = 1 + self.gamma.float() * nx
            if inplace and dtype == torch.float32:
                return x.mul_(scale).add_(self.beta)
            out = torch.addcmul(self.beta.float(), x32, scale)
        return out.to(dtype)
