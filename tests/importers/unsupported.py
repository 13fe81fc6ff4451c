"""A PyTorch model with an operator convlens does not import (pixel shuffle, as super-resolution nets upsample),
for the importers' tests."""

import torch.nn.functional as F
from torch import nn


class PixelShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return F.pixel_shuffle(self.conv(x), 2).flatten(1)[:, :10]
