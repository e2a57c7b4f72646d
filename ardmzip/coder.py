"""Entropy coding with constriction's ANS stack (the only module that imports it).

ANS is a stack: the encoder pushes chunks in the reverse of the order the decoder pops
them. Pitfalls handled here (see DESIGN-NOTES): ``Categorical(perfect=False)`` (the
default ``perfect=True`` is slow and makes a different stream), C-contiguous float64
probability rows, int32 symbols. Identical probability bytes give identical streams.
"""
from __future__ import annotations

import constriction
import numpy as np

from .errors import FormatError

_FAMILY = constriction.stream.model.Categorical(perfect=False)


class Encoder:
    def __init__(self) -> None:
        self._ans = constriction.stream.stack.AnsCoder()

    def push(self, symbols: np.ndarray, probs: np.ndarray) -> None:
        """Encode so that a decoder pops exactly these symbols, first row first."""
        if len(symbols):
            self._ans.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32), _FAMILY,
                                     np.ascontiguousarray(probs, dtype=np.float64))

    def finish(self) -> bytes:
        return self._ans.get_compressed().astype("<u4").tobytes()


class Decoder:
    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise FormatError("corrupt .ardm file: bitstream length is not a whole number of words")
        self._ans = constriction.stream.stack.AnsCoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))

    def pop(self, probs: np.ndarray) -> np.ndarray:
        if not len(probs):
            return np.zeros(0, dtype=np.int32)
        return self._ans.decode(_FAMILY, np.ascontiguousarray(probs, dtype=np.float64))

    def finished_cleanly(self) -> bool:
        """A stream decoded with the right probabilities ends exactly empty."""
        return self._ans.is_empty()
