"""Lucid's image parameterisation for colour OIPs: a Fourier spectrum, decorrelated colour, a sigmoid.

Optimising pixels directly puts most of the step into the highest frequencies, which big colour nets
answer with grain and saturated stripes. Lucid (Olah et al., "Feature Visualization", Distill 2017)
optimises a spectrum scaled by 1 / frequency instead, so every scale moves at the same pace, and
colours along the principal axes of natural images' colour (its ImageNet matrix), so no channel
saturates alone; a sigmoid keeps pixels in [0, 1]. This follows Lucent's param/spatial.py and
param/color.py (torch-lucent 0.1.8), with its constants, and Adam at its learning rate.

Unlike Lucent, a search starts from the spectrum of a given image (the parameterisation is inverted),
so spectral and pixel searches start from the same seeded multi-scale noise, and a map's start does
not depend on which other maps share its batch.
"""

from __future__ import annotations

import torch

# The square root of ImageNet's colour covariance, from Lucid, and its columns' largest norm.
COLOR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_NORMALISED = COLOR_CORRELATION / COLOR_CORRELATION.norm(dim=0).max()
LR = 0.05  # Adam's learning rate in Lucent's render_vis
MAGIC = 4.0  # Lucid's divisor of the image: larger reduces saturation


class Spectral:
    """Images of one shape made from spectra: `image(parameters)` is what the model sees, `parameters_of(images)`
    the spectra that make given images (the inverse), where a search starts."""

    def __init__(self, shape: tuple[int, int, int], decay: float = 1.0):
        self.channels, self.h, self.w = shape
        fy = torch.fft.fftfreq(self.h)[:, None]
        fx = torch.fft.rfftfreq(self.w)[None, :]
        frequency = (fx * fx + fy * fy).sqrt()
        self.scale = (1.0 / frequency.clamp(min=1.0 / max(self.h, self.w)) ** decay)[..., None]

    def image(self, parameters: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in (0, 1) from parameters (B, C, H, W // 2 + 1, 2): real and imaginary parts."""
        spectrum = torch.view_as_complex((self.scale * parameters).contiguous())
        x = torch.fft.irfftn(spectrum, s=(self.h, self.w), norm="ortho") / MAGIC
        if self.channels == 3:  # decorrelated colour: the channels move together as natural images' do
            x = torch.einsum("bchw,dc->bdhw", x, COLOR_NORMALISED)
        return torch.sigmoid(x)

    def parameters_of(self, images: torch.Tensor) -> torch.Tensor:
        """The parameters whose image is `images` (pixels kept off 0 and 1, where the sigmoid never reaches)."""
        x = torch.logit(images.clamp(1e-4, 1 - 1e-4))
        if self.channels == 3:
            x = torch.einsum("bdhw,cd->bchw", x, torch.linalg.inv(COLOR_NORMALISED))
        spectrum = torch.fft.rfftn(x * MAGIC, s=(self.h, self.w), norm="ortho")
        return torch.view_as_real(spectrum) / self.scale
