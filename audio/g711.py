"""G.711 mu-law and A-law, the two telephone codecs, with numpy.

Telephone audio (Asterisk AudioSocket is slin, but SIP trunks, recorders and
many call-center WAVs are G.711) arrives as one byte per sample. The stdlib
``audioop`` module that used to convert it is gone in Python 3.13, so the
conversion lives here as lookup tables built once from the reference
algorithm (Sun Microsystems' public-domain ``g711.c``, the same one sox uses).

Decoding maps each byte to a 16-bit linear sample (mu-law spans +-32124,
A-law +-32256). Encoding maps each 16-bit sample to a byte through a 65536
entry table, so both directions are one numpy ``take``.
"""

from __future__ import annotations

from functools import cache

import numpy as np

__all__ = ["decode_ulaw", "decode_alaw", "encode_ulaw", "encode_alaw"]

_BIAS = 0x84  # mu-law bias added before the segment search (132)
_ULAW_CLIP = 8159  # largest 14-bit magnitude mu-law can represent, after >> 2
_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


@cache
def _ulaw_to_linear() -> np.ndarray:
    """int16[256]: the linear sample each mu-law byte stands for."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _BIAS) << ((u & 0x70) >> 4)
    table = np.where(u & 0x80, _BIAS - t, t - _BIAS).astype(np.int16)
    table.setflags(write=False)
    return table


@cache
def _alaw_to_linear() -> np.ndarray:
    """int16[256]: the linear sample each A-law byte stands for."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    table = np.where(a & 0x80, t, -t).astype(np.int16)
    table.setflags(write=False)
    return table


@cache
def _linear_to_ulaw() -> np.ndarray:
    """uint8[65536], indexed by the sample's 16 bits read as unsigned."""
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32) >> 2
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    mag = np.minimum(np.abs(pcm), _ULAW_CLIP) + (_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEGMENT_ENDS, mag, side="left")
    uval = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    uval = np.where(seg >= 8, 0x7F, uval)
    table = ((uval ^ mask) & 0xFF).astype(np.uint8)
    table.setflags(write=False)
    return table


@cache
def _linear_to_alaw() -> np.ndarray:
    """uint8[65536], indexed by the sample's 16 bits read as unsigned."""
    pcm = np.arange(65536, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    mag = np.where(pcm >= 0, pcm, -pcm - 1)
    seg = np.searchsorted(_ALAW_SEGMENT_ENDS, mag, side="left")
    shift = np.where(seg < 2, 1, seg)
    aval = (seg << 4) | ((mag >> shift) & 0x0F)
    aval = np.where(seg >= 8, 0x7F, aval)
    table = ((aval ^ mask) & 0xFF).astype(np.uint8)
    table.setflags(write=False)
    return table


def _as_bytes_array(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    if isinstance(data, np.ndarray):
        if data.dtype not in (np.uint8, np.int8):
            raise TypeError(f"G.711 data must be bytes or a uint8 array, not {data.dtype}")
        return data.view(np.uint8).reshape(-1) if data.flags.c_contiguous else data.astype(np.uint8).reshape(-1)
    return np.frombuffer(data, dtype=np.uint8)


def _as_int16(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        if not np.issubdtype(samples.dtype, np.integer):
            raise TypeError(f"samples must be int16, not {samples.dtype}")
        samples = np.clip(samples, -32768, 32767).astype(np.int16)
    return samples.reshape(-1)


def decode_ulaw(data: bytes | np.ndarray) -> np.ndarray:
    """Mu-law bytes to int16 linear samples, one sample per byte (order kept)."""
    return _ulaw_to_linear().take(_as_bytes_array(data))


def decode_alaw(data: bytes | np.ndarray) -> np.ndarray:
    """A-law bytes to int16 linear samples, one sample per byte (order kept)."""
    return _alaw_to_linear().take(_as_bytes_array(data))


def encode_ulaw(samples: np.ndarray) -> bytes:
    """int16 samples (any shape, C order) to mu-law bytes, one byte per sample."""
    return _linear_to_ulaw().take(_as_int16(samples).view(np.uint16)).tobytes()


def encode_alaw(samples: np.ndarray) -> bytes:
    """int16 samples (any shape, C order) to A-law bytes, one byte per sample."""
    return _linear_to_alaw().take(_as_int16(samples).view(np.uint16)).tobytes()
