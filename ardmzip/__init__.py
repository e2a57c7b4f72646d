"""ardmzip: lossless image compression with exact order-agnostic autoregressive diffusion models.

    >>> import numpy as np, ardmzip
    >>> image = np.zeros((8, 8, 3), dtype=np.uint8)
    >>> data = ardmzip.compress(image)
    >>> bool((ardmzip.decompress(data) == image).all())
    True

Start reading at codec.py (the coding loop), then model.py (the network), schedule.py
(the step budget) and container.py (the file format).
"""
from .codec import DEFAULT_STEPS, compress, compress_picture, decompress, decompress_picture
from .files import compress_file, decompress_file
from .errors import ArdmzipError, ChecksumError, FormatError, InputError, LimitError, ModelMismatch, OutputError

__version__ = "0.1.0"
__all__ = ["compress", "decompress", "compress_file", "decompress_file", "compress_picture", "decompress_picture", "DEFAULT_STEPS",
           "ArdmzipError", "FormatError", "ChecksumError", "InputError", "LimitError", "ModelMismatch", "OutputError",
           "__version__"]
