"""Training and validation data: folders of images and .npz/.npy arrays, random crops.

Natural photos are augmented with downscaled copies (1/2, 1/3), random crops, flips and
transposes; a fraction of crops is turned gray (three equal slots) so gray images are in
distribution for the model. Small arrays (CIFAR-style 32x32) are sampled as whole images.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".bmp", ".ppm", ".pgm", ".pnm", ".tif", ".tiff", ".webp"}


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_arrays(path: Path) -> np.ndarray:
    """An .npz (key 'images' or the first array) or .npy of uint8 (N, H, W, C) images."""
    if path.suffix == ".npz":
        with np.load(path) as z:
            arr = z["images"] if "images" in z.files else z[z.files[0]]
    else:
        arr = np.load(path)
    if arr.dtype != np.uint8 or arr.ndim != 4:
        raise ValueError(f"{path}: expected uint8 (N, H, W, C) images, got {arr.dtype} {arr.shape}")
    return arr


def scan(root: str | os.PathLike) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """All photos (list of HxWx3) and small-image arrays (list of NxHxWx3) under root."""
    photos, arrays = [], []
    root = Path(root)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        if p.suffix.lower() in IMAGE_SUFFIXES:
            photos.append(load_rgb(p))
        elif p.suffix.lower() in {".npz", ".npy"}:
            a = load_arrays(p)
            if a.shape[-1] == 1:
                a = np.repeat(a, 3, axis=-1)
            arrays.append(a[..., :3])
    return photos, arrays


def pyramid(photos: list[np.ndarray], factors: tuple[int, ...] = (2, 3)) -> list[np.ndarray]:
    """Photos plus downscaled copies (area-like Lanczos), which look like smaller photos."""
    out = list(photos)
    for im in photos:
        h, w = im.shape[:2]
        for f in factors:
            if min(h, w) // f >= 64:
                out.append(np.asarray(Image.fromarray(im).resize((w // f, h // f), Image.LANCZOS)))
    return out


def luma(r, g, b):
    """ITU-R 601 luma as Pillow's convert('L') computes it, on integer numpy arrays or tensors."""
    return (r * 299 + g * 587 + b * 114 + 500) // 1000


def subsample_chroma(images: torch.Tensor, selected: torch.Tensor, vertical: torch.Tensor,
                     phase_y: torch.Tensor, phase_x: torch.Tensor) -> torch.Tensor:
    """Video-style chroma subsampling of some crops, as in frames decoded from YUV (Set14's
    foreman and coastguard are 4:2:0, barbara 4:2:2): the image goes to 8-bit YCbCr (JPEG's
    full-range ITU-R 601 matrix), Cb and Cr are averaged over 2x2 blocks (``vertical``) or
    1x2 blocks, rounded, repeated over the block and the result goes back to 8-bit RGB.
    Blocks start at row ``phase_y``, column ``phase_x`` (mod 2), so a trainer can align them
    with the interlaced order's coarse pixels, as they are in such pictures (both start at
    the top-left pixel). images: (B, 3, H, W) long 0..255; the other arguments (B,). The
    selected crops are replaced; others are returned unchanged."""
    b, _, h, w = images.shape
    x = images.float()
    r, g, bl = x[:, 0], x[:, 1], x[:, 2]
    y = (0.299 * r + 0.587 * g + 0.114 * bl).round()
    cb = -0.168736 * r - 0.331264 * g + 0.5 * bl
    cr = 0.5 * r - 0.418688 * g - 0.081312 * bl
    chroma = torch.stack([cb, cr], 1)                                      # (B, 2, H, W)
    rolled = _roll_by_phase(chroma, phase_y, phase_x, -1)                  # blocks start at (0, 0)
    mean22 = torch.nn.functional.avg_pool2d(rolled, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    mean12 = torch.nn.functional.avg_pool2d(rolled, (1, 2)).repeat_interleave(2, 3)
    pooled = torch.where(vertical.view(b, 1, 1, 1), mean22[..., :h, :w], mean12[..., :h, :w]).round()
    pooled = _roll_by_phase(pooled, phase_y, phase_x, 1)
    cb, cr = pooled[:, 0], pooled[:, 1]
    rgb = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    out = rgb.round().clamp(0, 255).long()
    return torch.where(selected.view(b, 1, 1, 1), out, images)


def _roll_by_phase(x: torch.Tensor, phase_y: torch.Tensor, phase_x: torch.Tensor, sign: int) -> torch.Tensor:
    """Roll each image of (B, C, H, W) by sign * (its phase); one roll per phase, not per image."""
    out = x.clone()
    for py in (0, 1):
        for px in (0, 1):
            sel = (phase_y == py) & (phase_x == px)
            if bool(sel.any()):
                out[sel] = x[sel].roll((sign * py, sign * px), (2, 3))
    return out


def to_gray(batch: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (as Pillow's convert('L')) copied into three slots. (..., 3) uint8."""
    batch = batch.astype(np.int32)
    y = luma(batch[..., 0], batch[..., 1], batch[..., 2])
    return np.repeat(y[..., None], 3, axis=-1).astype(np.uint8)


class CropSampler:
    """Random (B, H, W, 3) uint8 crops plus a gray flag per crop."""

    def __init__(self, photos: list[np.ndarray], arrays: list[np.ndarray], crop: int = 32,
                 array_fraction: float = 0.25, gray_fraction: float = 0.1, seed: int = 0):
        self.photos = [p for p in photos if min(p.shape[:2]) >= crop]
        self.arrays = [a for a in arrays if a.shape[1] >= crop and a.shape[2] >= crop]
        if not self.photos and not self.arrays:
            raise ValueError(f"no training images of at least {crop}x{crop}")
        self.crop, self.gray_fraction = crop, gray_fraction
        self.array_fraction = array_fraction if self.arrays and self.photos else float(bool(self.arrays))
        weights = np.array([p.shape[0] * p.shape[1] for p in self.photos], dtype=np.float64)
        self.photo_p = weights / weights.sum() if len(weights) else None
        self.rng = np.random.default_rng(seed)

    def _one(self) -> np.ndarray:
        c, rng = self.crop, self.rng
        if rng.random() < self.array_fraction:
            a = self.arrays[rng.integers(len(self.arrays))]
            im = a[rng.integers(len(a))]
        else:
            im = self.photos[rng.choice(len(self.photos), p=self.photo_p)]
        y, x = rng.integers(im.shape[0] - c + 1), rng.integers(im.shape[1] - c + 1)
        out = im[y:y + c, x:x + c]
        if rng.random() < 0.5:
            out = out[:, ::-1]
        if rng.random() < 0.5:
            out = out.transpose(1, 0, 2)
        return out

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        crops = np.stack([self._one() for _ in range(batch)])
        gray = self.rng.random(batch) < self.gray_fraction
        crops[gray] = to_gray(crops[gray])
        return crops, gray


class TensorCropSampler:
    """CropSampler's distribution drawn with torch ops on one device (GPU training: no
    per-crop Python loop, no host-to-device copies).

    Photos and small-array images are packed into flat uint8 buffers on ``device``; a crop
    is one gather through computed indices (flips and transposes are index arithmetic).
    Differences from CropSampler: each batch holds a fixed number of array images
    (round(batch * array_fraction)), so shapes stay fixed, and array images are cropped at
    ``min(crop, their size)``, so photo crops may be larger than the 32x32 small images:
    ``sample`` then returns two groups of different sizes.
    """

    def __init__(self, photos: list[np.ndarray], arrays: list[np.ndarray], crop: int = 32,
                 array_fraction: float = 0.25, gray_fraction: float = 0.1, seed: int = 0,
                 device: str | torch.device = "cpu"):
        self.device, self.crop, self.gray_fraction = torch.device(device), crop, gray_fraction
        photos = [p for p in photos if min(p.shape[:2]) >= crop]
        smallest = min((min(a.shape[1:3]) for a in arrays), default=0)
        self.array_crop = min(crop, smallest)
        images = [im for a in arrays for im in a] if self.array_crop >= 8 else []
        self.pools = {}
        if photos:
            self.pools["photo"] = self._pack(photos, [p.shape[0] * p.shape[1] for p in photos])
        if images:
            self.pools["array"] = self._pack(images, [1.0 / (len(arrays) * len(a)) for a in arrays for _ in a])
        if not self.pools:
            raise ValueError(f"no training images of at least {crop}x{crop}")
        self.array_fraction = array_fraction if len(self.pools) == 2 else float("array" in self.pools)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def _pack(self, images: list[np.ndarray], weights: list[float]) -> dict[str, torch.Tensor]:
        sizes = [im.size for im in images]
        dev = self.device
        return {"buf": torch.from_numpy(np.concatenate([im.reshape(-1) for im in images])).to(dev),
                "offset": torch.tensor(np.cumsum([0] + sizes[:-1]), dtype=torch.int64, device=dev),
                "h": torch.tensor([im.shape[0] for im in images], dtype=torch.int64, device=dev),
                "w": torch.tensor([im.shape[1] for im in images], dtype=torch.int64, device=dev),
                "p": torch.tensor(weights, dtype=torch.float32, device=dev)}

    def _rand(self, n: int) -> torch.Tensor:
        return torch.rand(n, generator=self.generator, device=self.device)

    def _crops(self, pool: dict[str, torch.Tensor], n: int, c: int) -> torch.Tensor:
        """n random c x c crops, randomly flipped and transposed: (n, 3, c, c) int64."""
        i = torch.multinomial(pool["p"], n, replacement=True, generator=self.generator)
        h, w, offset = pool["h"][i], pool["w"][i], pool["offset"][i]
        y = (self._rand(n) * (h - c + 1)).long().view(n, 1, 1)
        x = (self._rand(n) * (w - c + 1)).long().view(n, 1, 1)
        a = torch.arange(c, device=self.device).view(1, c, 1).expand(n, c, c)
        b = a.transpose(1, 2)
        transpose = (self._rand(n) < 0.5).view(n, 1, 1)
        flip = (self._rand(n) < 0.5).view(n, 1, 1)
        row = torch.where(transpose, b, a)           # out[a, b] = crop[b, a] when transposed
        col = torch.where(transpose, a, b)
        col = torch.where(flip, c - 1 - col, col)    # the flip is applied before the transpose
        index = offset.view(n, 1, 1) + ((y + row) * w.view(n, 1, 1) + x + col) * 3
        index = index.unsqueeze(1) + torch.arange(3, device=self.device).view(1, 3, 1, 1)
        return pool["buf"][index].long()

    def sample(self, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Groups of (images (B, 3, h, w) int64 0..255, gray flags (B,) bool): one group, or
        two when photo crops and small images differ in size."""
        n_array = round(batch * self.array_fraction)
        parts = []
        if batch - n_array:
            parts.append(self._crops(self.pools["photo"], batch - n_array, self.crop))
        if n_array:
            parts.append(self._crops(self.pools["array"], n_array, self.array_crop))
        if len(parts) == 2 and parts[0].shape[1:] == parts[1].shape[1:]:
            parts = [torch.cat(parts)]
        groups = []
        for x in parts:
            gray = self._rand(len(x)) < self.gray_fraction
            y = luma(x[:, 0], x[:, 1], x[:, 2])
            groups.append((torch.where(gray.view(-1, 1, 1, 1), y.unsqueeze(1).expand_as(x), x), gray))
        return groups
