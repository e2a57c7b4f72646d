"""Lossless codecs compared by the benchmark, each behind the same tiny interface.

A codec has a ``name`` (shown in tables), a ``key`` (what ``--codecs`` selects),
``available() -> (ok, reason)``, ``encode(image) -> bytes`` and
``decode(data) -> array``. Images are uint8 H x W x C arrays with C in {1, 3, 4}.
Decoders return whatever the format stores; the runner in ``compare.py`` does
the bit-exact check (a format without a grayscale mode, like WebP, hands a gray
image back as three equal channels).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np

#: Selection keys in table order; "ardmzip" expands to one codec per step budget.
CODEC_KEYS: tuple[str, ...] = ("png", "webp", "jxl7", "jxl9", "jpegls", "j2k", "ardmzip")


def _planes(image: np.ndarray) -> np.ndarray:
    """H x W x 1 -> H x W: the libraries only recognise gray as a 2-D array."""
    return image[..., 0] if image.ndim == 3 and image.shape[2] == 1 else image


class Codec:
    """Base class: subclasses set ``name``/``key`` and implement encode/decode."""

    name: str = "codec"
    key: str = "codec"
    #: Step budget for ardmzip rows (None for baselines and the package default).
    steps: int | None = None

    def available(self) -> tuple[bool, str]:
        return True, ""

    def encode(self, image: np.ndarray) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class PillowCodec(Codec):
    """PNG / WebP through Pillow."""

    def __init__(self, key: str, name: str, fmt: str, **save_kwargs: object) -> None:
        self.key, self.name, self.fmt, self.save_kwargs = key, name, fmt, save_kwargs

    def available(self) -> tuple[bool, str]:
        if self.fmt == "WEBP":
            from PIL import features

            if not features.check("webp"):
                return False, "Pillow built without WebP support"
        return True, ""

    def encode(self, image: np.ndarray) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(_planes(image))).save(buf, self.fmt, **self.save_kwargs)
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im).copy()


class ImagecodecsCodec(Codec):
    """JPEG-XL / JPEG-LS / JPEG 2000 through imagecodecs, in lossless mode."""

    def __init__(
        self,
        key: str,
        name: str,
        module: str,
        encode: Callable[[np.ndarray], bytes],
        decode: Callable[[bytes], np.ndarray],
    ) -> None:
        self.key, self.name, self.module = key, name, module
        self._encode, self._decode = encode, decode

    def available(self) -> tuple[bool, str]:
        try:
            import imagecodecs
        except ImportError as exc:
            return False, f"imagecodecs not installed ({exc})"
        codec = getattr(imagecodecs, self.module, None)
        if codec is None or not getattr(codec, "available", False):
            return False, f"imagecodecs {imagecodecs.__version__} built without {self.module}"
        return True, ""

    def encode(self, image: np.ndarray) -> bytes:
        return bytes(self._encode(np.ascontiguousarray(_planes(image))))

    def decode(self, data: bytes) -> np.ndarray:
        return np.asarray(self._decode(data))


def _jxl(effort: int) -> ImagecodecsCodec:
    import imagecodecs

    return ImagecodecsCodec(
        f"jxl{effort}",
        f"jpegxl-e{effort}",
        "JPEGXL",
        # lossless=True sets distance 0 and the modular mode; effort 1..9 (10 is "tectonic plate").
        lambda a: imagecodecs.jpegxl_encode(a, lossless=True, effort=effort),
        imagecodecs.jpegxl_decode,
    )


def _jpegls() -> ImagecodecsCodec:
    import imagecodecs

    # level=None means NEAR=0, i.e. lossless JPEG-LS.
    return ImagecodecsCodec("jpegls", "jpeg-ls", "JPEGLS", imagecodecs.jpegls_encode, imagecodecs.jpegls_decode)


def _j2k() -> ImagecodecsCodec:
    import imagecodecs

    return ImagecodecsCodec(
        "j2k",
        "jpeg2000",
        "JPEG2K",
        # reversible=True selects the integer 5/3 wavelet (+ reversible colour transform);
        # level=0 asks for no rate target, so nothing is truncated: lossless.
        lambda a: imagecodecs.jpeg2k_encode(a, level=0, reversible=True),
        imagecodecs.jpeg2k_decode,
    )


class _Unavailable(Codec):
    """Stands in for a codec whose library cannot even be imported."""

    def __init__(self, key: str, name: str, reason: str) -> None:
        self.key, self.name, self.reason = key, name, reason

    def available(self) -> tuple[bool, str]:
        return False, self.reason


class ArdmzipCodec(Codec):
    """ardmzip through its public API: ``compress(array, steps)`` / ``decompress(data)``,
    the network on ``device`` (rows on a GPU are named ``ardmzip...@cuda``); with ``adapt``
    steps, the network tuned to each picture first (``--adapt``; rows named ``...+adapt30``)."""

    key = "ardmzip"

    def __init__(self, steps: int | None = None, device: str = "cpu", model: str | None = None,
                 adapt: int = 0) -> None:
        self.steps, self.device, self.model, self.adapt = steps, device, model, adapt
        self.name = (("ardmzip" if steps is None else f"ardmzip-{steps}") + ("" if device == "cpu" else f"@{device}")
                     + ("" if model is None else f"[{Path(model).stem}]") + (f"+adapt{adapt}" if adapt else ""))

    def available(self) -> tuple[bool, str]:
        try:
            import ardmzip
        except Exception as exc:  # the package may be half-written: any import error means "skip"
            return False, f"cannot import ardmzip ({type(exc).__name__}: {exc})"
        missing = [f for f in ("compress", "decompress") if not callable(getattr(ardmzip, f, None))]
        if missing:
            return False, f"ardmzip has no {', '.join(missing)}() yet"
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                return False, "no CUDA device"
        return True, ""

    def warm_up(self) -> None:
        """Start the compiled CPU kernels (~0.9 s once per process, like loading the model):
        a process coding enough pixels starts them by itself, the warm-up's crop would not."""
        from ardmzip import jit

        jit.start()

    def encode(self, image: np.ndarray) -> bytes:
        import ardmzip

        return bytes(ardmzip.compress(image, steps=self.steps, device=self.device, model=self.model,
                                      adapt=self.adapt))

    def decode(self, data: bytes) -> np.ndarray:
        import ardmzip

        return np.asarray(ardmzip.decompress(data, device=self.device))


def make_codec(key: str) -> Codec:
    """One baseline codec by selection key (not "ardmzip": use ``ArdmzipCodec``)."""
    if key == "png":
        return PillowCodec("png", "png", "PNG", optimize=True)
    if key == "webp":
        # exact=True keeps RGB under fully transparent pixels, otherwise WebP may rewrite them.
        return PillowCodec("webp", "webp", "WEBP", lossless=True, method=6, exact=True)
    builders: dict[str, tuple[str, Callable[[], Codec]]] = {
        "jxl7": ("jpegxl-e7", lambda: _jxl(7)),
        "jxl9": ("jpegxl-e9", lambda: _jxl(9)),
        "jpegls": ("jpeg-ls", _jpegls),
        "j2k": ("jpeg2000", _j2k),
    }
    if key not in builders:
        raise ValueError(f"unknown codec {key!r}; choose from {', '.join(CODEC_KEYS)}")
    name, build = builders[key]
    try:
        return build()
    except ImportError as exc:
        return _Unavailable(key, name, f"imagecodecs not installed ({exc})")


def make_codecs(keys: list[str] | None = None, ardmzip_steps: list[int | None] | None = None,
                ardmzip_device: str = "cpu", ardmzip_model: str | None = None,
                ardmzip_adapt: list[int] | None = None) -> list[Codec]:
    """Codecs for the given keys (default: all), ardmzip once per step budget and adaptation
    (``ardmzip_adapt``: tuning steps, 0 = plain; with ``ardmzip_model``, a model name or model
    file, instead of the default model)."""
    codecs: list[Codec] = []
    for key in keys or list(CODEC_KEYS):
        if key == "ardmzip":
            codecs.extend(ArdmzipCodec(s, ardmzip_device, ardmzip_model, a)
                          for s in (ardmzip_steps or [None]) for a in (ardmzip_adapt or [0]))
        else:
            codecs.append(make_codec(key))
    return codecs
