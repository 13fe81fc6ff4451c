"""A PyTorch model with an operator convlens does not import (nearest-neighbour upsampling), for the importers' tests."""

import torch.nn.functional as F
from torch import nn


class Upsampling(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return F.interpolate(self.conv(x), scale_factor=2.0).flatten(1)[:, :10]
