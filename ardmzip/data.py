"""Training and validation data: folders of images and .npz/.npy arrays, random crops.

Natural photos are augmented with downscaled copies (1/2, 1/3), random crops, flips and
transposes; a fraction of crops is turned gray (three equal slots) so gray images are in
distribution for the model. Small arrays (CIFAR-style 32x32) are sampled as whole images.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
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


def to_gray(batch: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (as Pillow's convert('L')) copied into three slots. (..., 3) uint8."""
    batch = batch.astype(np.int32)
    y = (batch[..., 0] * 299 + batch[..., 1] * 587 + batch[..., 2] * 114 + 500) // 1000
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
