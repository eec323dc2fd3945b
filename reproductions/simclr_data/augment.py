"""SimCLR's data augmentation (Chen et al. 2020, §3 and App. A), batched on the batch's device.

Every function takes float images in [0, 1], shape (B, 3, H, W), and a `torch.Generator` living on
the images' device; every image draws its own parameters from it (no Python loop over images), so
the same generator state gives the same output. One view is, in the official order
(`data_util.preprocess_for_train`, then `batch_random_blur` in `model.py`):

1. random resized crop, resized back to H×W, then a horizontal flip with p 0.5;
2. with p 0.8 colour jitter of strength s: brightness, contrast, saturation (0.8 s each) and hue
   (0.2 s), in a random order per image, clipped to [0, 1] after each;
3. with p 0.2 greyscale (kept as 3 channels);
4. (ImageNet only) with p 0.5 a Gaussian blur, σ ~ U(0.1, 2.0), kernel 10% of the side.

CIFAR-10 (official README command): s = 0.5 and no blur. Where the official TF code and torchvision
differ, the choice is stated at the function.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

# -- the settings, in one place -----------------------------------------------------------------------------
CROP_SCALE = (0.08, 1.0)  # fraction of the image's area (App. A: "a random size (uniform from 0.08 to 1.0)")
CROP_RATIO = (3 / 4, 4 / 3)  # aspect ratio, width / height (App. A)
CROP_ATTEMPTS = 10  # torchvision's tries before falling back to the whole image (TF: 100)
FLIP_P = 0.5
JITTER_P = 0.8  # `random_color_jitter`: random_apply(color_jitter, p=0.8)
GREYSCALE_P = 0.2  # random_apply(to_grayscale, p=0.2)
BLUR_P = 0.5  # `batch_random_blur(blur_probability=0.5)`
BLUR_SIGMA = (0.1, 2.0)  # `random_blur`: sigma ~ U(0.1, 2.0)
CIFAR_STRENGTH = 0.5  # README's CIFAR-10 command: --color_jitter_strength=0.5 --use_blur=False
GREY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale (ITU-R BT.601 luma)


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=device)


def _check_images(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"expected float images of shape (B, 3, H, W) in [0, 1], got {x.dtype} "
                         f"{tuple(x.shape)}; convert uint8 batches with `to_float`")


def to_float(images: torch.Tensor, device=None) -> torch.Tensor:
    """uint8 (B, 3, H, W) or (B, H, W, 3), a tensor or a numpy array, to float32 (B, 3, H, W) in [0, 1]
    on `device` (moved while still uint8). A batch whose dim 1 is 3 is read as channels-first."""
    images = torch.from_numpy(images.copy()) if isinstance(images, np.ndarray) else torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.ndim != 4 or 3 not in (images.shape[1], images.shape[3]):
        raise ValueError(f"expected uint8 images of shape (B, 3, H, W) or (B, H, W, 3), got {images.dtype} "
                         f"{tuple(images.shape)}")
    if images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    return images.to(device).contiguous().float().div_(255)


# -- 1. random resized crop and flip ---------------------------------------------------------------------
def crop_boxes(batch: int, height: int, width: int, generator: torch.Generator, scale=CROP_SCALE,
               ratio=CROP_RATIO, device=None) -> torch.Tensor:
    """(B, 4) integer boxes (top, left, box height, box width), torchvision's RandomResizedCrop sampling:
    area ~ U(scale) × H W, log aspect ratio ~ U(log ratio), sides rounded to pixels; the first of
    `CROP_ATTEMPTS` draws that fits inside the image, else the whole image; offsets uniform.
    (TF's `sample_distorted_bounding_box`, used officially, samples the aspect ratio uniformly, the
    height uniformly given it, and also asks that the box cover 10% of the image: close, not equal.)"""
    if not (0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]):
        raise ValueError(f"need 0 < scale[0] <= scale[1] <= 1 and 0 < ratio[0] <= ratio[1]; got scale={scale}, "
                         f"ratio={ratio}")
    shape = (batch, CROP_ATTEMPTS)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * torch.rand(shape, generator=generator, device=device))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(shape, generator=generator, device=device))
    box_w = torch.sqrt(area * aspect).round()
    box_h = torch.sqrt(area / aspect).round()
    fits = (box_w >= 1) & (box_w <= width) & (box_h >= 1) & (box_h <= height)
    first = fits.int().argmax(dim=1, keepdim=True)  # index of the first fitting attempt (0 if none fit)
    any_fit = fits.any(dim=1)
    box_w = torch.where(any_fit, box_w.gather(1, first).squeeze(1), torch.full_like(any_fit, width, dtype=box_w.dtype))
    box_h = torch.where(any_fit, box_h.gather(1, first).squeeze(1), torch.full_like(any_fit, height, dtype=box_h.dtype))
    top = torch.floor(torch.rand(batch, generator=generator, device=device) * (height - box_h + 1))
    left = torch.floor(torch.rand(batch, generator=generator, device=device) * (width - box_w + 1))
    return torch.stack([top, left, box_h, box_w], dim=1)


def random_resized_crop(x: torch.Tensor, generator: torch.Generator, scale=CROP_SCALE, ratio=CROP_RATIO,
                        flip_p: float = 0.0) -> torch.Tensor:
    """Crop each image to its own box (`crop_boxes`) and resize it back to H×W by bilinear interpolation,
    as one batched affine resampling (`affine_grid` + `grid_sample`, align_corners=False, so pixel
    centres map as in a resize); with probability `flip_p` the same affine map also mirrors the image
    left-right. The official code resizes bicubically; bilinear here."""
    _check_images(x)
    b, _, h, w = x.shape
    top, left, box_h, box_w = crop_boxes(b, h, w, generator, scale, ratio, x.device).T
    flip = torch.rand(b, generator=generator, device=x.device) < flip_p
    # normalised coordinates: the box [left, left + box_w) maps onto [-1, 1]
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = torch.where(flip, -box_w / w, box_w / w)
    theta[:, 0, 2] = (2 * left + box_w) / w - 1
    theta[:, 1, 1] = box_h / h
    theta[:, 1, 2] = (2 * top + box_h) / h - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = FLIP_P) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    _check_images(x)
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


# -- 2. colour jitter -------------------------------------------------------------------------------------------
def greyscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma."""
    weights = torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device)
    return torch.einsum("bchw,c->bhw", x, weights).unsqueeze(1)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """SimCLR v2's multiplicative brightness (`random_brightness`, impl 'simclrv2'): x × factor."""
    return x * factor[:, None, None, None]


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """tf.image.adjust_contrast: each channel moves away from its own mean, (x − mean) × factor + mean
    (torchvision uses the mean of the greyscale image instead)."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * factor[:, None, None, None] + mean


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """tf.image.adjust_saturation: HSV saturation × factor, clipped to [0, 1], hue and value kept. With H
    and V fixed each channel is V − S·V·c(H), so scaling S is x → V + f (x − V) per pixel, f capped so
    that the smallest channel does not go below 0 (S ≤ 1). No HSV round trip needed."""
    value = x.amax(dim=1, keepdim=True)
    low = x.amin(dim=1, keepdim=True)
    f = factor[:, None, None, None]
    cap = value / (value - low).clamp_min(1e-12)  # f at which S reaches 1
    f = torch.minimum(f.expand_as(cap), cap)
    return value + f * (x - value)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] to HSV, hue in [0, 1) turns."""
    r, g, b = x.unbind(1)
    value, _ = x.max(dim=1)
    chroma = value - x.min(dim=1).values
    safe = chroma.clamp_min(1e-12)
    hue = torch.where(value == r, ((g - b) / safe) % 6,
                      torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue)) % 1.0
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-12), torch.zeros_like(value))
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_hsv`: channel n of (R, G, B) = (5, 3, 1) is V − V S clamp(min(k, 4 − k), 0, 1),
    k = (n + 6 H) mod 6."""
    hue, saturation, value = hsv[:, 0:1], hsv[:, 1:2], hsv[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device)[None, :, None, None]
    k = (n + 6 * hue) % 6
    return value - value * saturation * torch.minimum(k, 4 - k).clamp(0, 1)


def adjust_hue(x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """tf.image.adjust_hue: rotate the HSV hue by `delta` turns (in [−0.5, 0.5])."""
    hsv = rgb_to_hsv(x)
    hue = (hsv[:, 0:1] + delta[:, None, None, None]) % 1.0
    return hsv_to_rgb(torch.cat([hue, hsv[:, 1:]], dim=1))


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def colour_jitter(x: torch.Tensor, generator: torch.Generator, strength: float, p: float = JITTER_P) -> torch.Tensor:
    """With probability p per image, the four jitters of `data_util.color_jitter_rand` in a random order
    per image, each clipped to [0, 1]: brightness × U(max(0, 1 − 0.8 s), 1 + 0.8 s), contrast and
    saturation × U(max(0, 1 − 0.8 s), 1 + 0.8 s), hue + U(−0.2 s, 0.2 s) turns. The random order is
    done with masks: at each of the 4 positions each op runs once, on the images that have it there."""
    _check_images(x)
    if not strength >= 0:
        raise ValueError(f"colour-jitter strength must be >= 0, got {strength}")
    b, device = x.shape[0], x.device
    amount = 0.8 * strength
    params = [_uniform(b, max(0.0, 1 - amount), 1 + amount, generator, device) for _ in range(3)]
    params.append(_uniform(b, -0.2 * strength, 0.2 * strength, generator, device))
    order = torch.rand(b, 4, generator=generator, device=device).argsort(dim=1)  # a permutation per image
    apply = torch.rand(b, generator=generator, device=device) < p
    out = x.clone()
    for position in range(4):
        for op_index, op in enumerate(JITTER_OPS):
            chosen = torch.nonzero(apply & (order[:, position] == op_index)).squeeze(1)
            if chosen.numel():
                out[chosen] = op(out[chosen], params[op_index][chosen]).clamp_(0, 1)
    return out


def random_greyscale(x: torch.Tensor, generator: torch.Generator, p: float = GREYSCALE_P) -> torch.Tensor:
    """With probability p per image, replace it by its luma copied to the 3 channels."""
    _check_images(x)
    grey = torch.rand(x.shape[0], generator=generator, device=x.device) < p
    return torch.where(grey[:, None, None, None], greyscale(x).expand_as(x), x)


# -- 4. blur ---------------------------------------------------------------------------------------------------------
def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one σ per image (B,), as the official `gaussian_blur`: kernel size
    H // 10 made odd (radius = (H // 10) // 2), zero ('SAME') padding. Done as two grouped convolutions
    over the (B·3) channels, so every image has its own kernel."""
    _check_images(x)
    b, c, h, w = x.shape
    radius = (h // 10) // 2
    if radius == 0:
        return x
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-taps[None, :] ** 2 / (2 * sigma[:, None].to(x.dtype) ** 2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B·3, 2r + 1)
    flat = x.reshape(1, b * c, h, w)
    flat = F.conv2d(flat, kernel[:, None, None, :], padding=(0, radius), groups=b * c)
    flat = F.conv2d(flat, kernel[:, None, :, None], padding=(radius, 0), groups=b * c)
    return flat.reshape(b, c, h, w)


def random_blur(x: torch.Tensor, generator: torch.Generator, p: float = BLUR_P) -> torch.Tensor:
    """With probability p per image, `gaussian_blur` with σ ~ U(0.1, 2.0) of its own (the official
    `batch_random_blur` draws one σ per batch and a per-image coin)."""
    sigma = _uniform(x.shape[0], *BLUR_SIGMA, generator, x.device)
    blur = torch.rand(x.shape[0], generator=generator, device=x.device) < p
    return torch.where(blur[:, None, None, None], gaussian_blur(x, sigma), x)


# -- a view, and the two views of SimCLR --------------------------------------------------------------------
def simclr_view(x: torch.Tensor, generator: torch.Generator, strength: float = CIFAR_STRENGTH,
                blur: bool = False) -> torch.Tensor:
    """One augmented view of float images (B, 3, H, W) in [0, 1]: crop + flip, colour jitter (p 0.8),
    greyscale (p 0.2), clip, then (if `blur`) blur (p 0.5), clip."""
    x = random_resized_crop(x, generator, flip_p=FLIP_P)
    x = colour_jitter(x, generator, strength)
    x = random_greyscale(x, generator).clamp_(0, 1)
    if blur:
        x = random_blur(x, generator).clamp_(0, 1)
    return x


def two_views(images, generator: torch.Generator, strength: float = CIFAR_STRENGTH,
              blur: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's pair of views (§2.1): uint8 images (B, 3, H, W) or (B, H, W, 3) to two independently
    augmented float32 batches (B, 3, H, W) in [0, 1], on the generator's device."""
    x = to_float(images, generator.device)
    return simclr_view(x, generator, strength, blur), simclr_view(x, generator, strength, blur)
