"""Many pictures in one network call: files identical to coding each alone, errors kept apart."""
from __future__ import annotations

import numpy as np
import pytest

from ardmzip import codec, container
from ardmzip.errors import ChecksumError, FormatError
from ardmzip.imageio import Picture, picture_from_array

from test_codec import smooth_image
from test_constraint import palette_image

STEPS = 5


def mixed_pictures() -> list[Picture]:
    rgb = [smooth_image(12, 10, 3, seed=s) for s in range(4)]                    # one size, batched
    rgba = np.concatenate([smooth_image(12, 10, 3, seed=9), smooth_image(12, 10, 1, seed=8)], -1)
    arrays = rgb + [
        smooth_image(7, 9, 3, seed=5),                                           # another size
        smooth_image(12, 10, 1, seed=6)[..., 0],                                 # gray
        np.repeat(smooth_image(12, 10, 1, seed=7), 3, axis=2),                  # gray stored as RGB
        palette_image(12, 10, 4, seed=1),                                        # palette
        np.full((12, 10, 3), 17, np.uint8),                                      # constant
        rgba,
        np.random.default_rng(3).integers(0, 256, (12, 10, 3), dtype=np.uint8),
    ]
    return [picture_from_array(a) for a in arrays]


@pytest.fixture(scope="module")
def alone() -> list[bytes]:
    return [codec.compress_picture(p, STEPS) for p in mixed_pictures()]


@pytest.mark.parametrize("batch_subpixels", [codec.BATCH_SUBPIXELS, 3 * 12 * 10 * 2 + 1])
def test_batched_files_are_identical_to_files_coded_alone(alone, monkeypatch, batch_subpixels):
    monkeypatch.setattr(codec, "BATCH_SUBPIXELS", batch_subpixels)
    assert codec.compress_pictures(mixed_pictures(), STEPS) == alone


@pytest.mark.parametrize("batch_subpixels", [codec.BATCH_SUBPIXELS, 3 * 12 * 10 * 3 + 1])
def test_files_coded_alone_decode_together(alone, monkeypatch, batch_subpixels):
    monkeypatch.setattr(codec, "BATCH_SUBPIXELS", batch_subpixels)
    decoded = codec.decompress_pictures(alone)
    for picture, result in zip(mixed_pictures(), decoded):
        assert isinstance(result, Picture)
        assert np.array_equal(result.pixels, picture.pixels) and result.mode == picture.mode


def test_a_damaged_file_fails_alone_in_its_batch(alone):
    files = list(alone)
    header, streams = container.unpack(files[1])
    ans = bytearray(streams[0])
    ans[-3] ^= 0x40                                       # past the container CRC: re-packed below
    files[1] = container.pack(header, [bytes(ans)])
    files[2] = b"not an ardm file"
    decoded = codec.decompress_pictures(files)
    assert isinstance(decoded[1], (FormatError, ChecksumError))
    assert isinstance(decoded[2], FormatError)
    for i, (picture, result) in enumerate(zip(mixed_pictures(), decoded)):
        if i not in (1, 2):
            assert np.array_equal(result.pixels, picture.pixels)


def test_a_gpu_takes_larger_batches_and_archives_batch_by_the_device(monkeypatch):
    """GPU calls carry GPU_BATCH_FACTOR times the pictures; "auto" follows torch; the archive's
    batching asks the device, so a GPU run groups many CIFAR-size images per call."""
    from ardmzip import jobs
    assert codec.batch_subpixels("cuda") == codec.GPU_BATCH_FACTOR * codec.batch_subpixels("cpu") > 1 << 20
    monkeypatch.setattr(codec.torch.cuda, "is_available", lambda: True)
    assert codec.batch_subpixels("auto") == codec.batch_subpixels("cuda")
    sizes = [3072] * 2000
    assert [len(b) for b in jobs._batches(sizes, int, "cpu")][:2] == [42, 42]
    assert [len(b) for b in jobs._batches(sizes, int, "cuda")] == [1365, 635]
