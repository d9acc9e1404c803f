"""Encoded images of a sample: lossless PNG of uint8 grey/RGB arrays, PNG/JPEG headers read without decoding."""

from __future__ import annotations

import struct

import cv2
import numpy as np

__all__ = ["encode_png", "decode_png", "image_header"]


def encode_png(array: np.ndarray) -> bytes:  # [H, W] grey or [H, W, 3] RGB, uint8
    """Lossless PNG bytes of a uint8 grey or RGB array (cv2 wants BGR, hence the swap)."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise ValueError(f"cv2 could not encode an array of shape {array.shape} as PNG")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG bytes to uint8 [H, W] (grey) or [H, W, 3] (RGB)."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError("bytes do not decode as an image")
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB) if array.ndim == 3 else array


def image_header(data: bytes) -> tuple[str, int, int, int]:
    """(format, width, height, channels) read from a PNG or JPEG header without decoding.

    PNG: 8-bit grey (1 channel) or RGB (3) only; other colour types / bit depths raise. The slow
    twin is `decode_png(data).shape`; tests compare the two.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 26:
        width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
        channels = {0: 1, 2: 3}.get(colour)
        if depth != 8 or channels is None:
            raise ValueError(f"PNG must be 8-bit grey or RGB, got bit depth {depth}, colour type {colour}")
        return "png", width, height, channels
    if data[:2] == b"\xff\xd8":
        return ("jpg", *_jpeg_size(data))
    raise ValueError("not a PNG or JPEG file")


def _jpeg_size(data: bytes) -> tuple[int, int, int]:
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 10 <= len(data):
            height, width, components = struct.unpack(">HHB", data[i + 5:i + 10])
            return width, height, components
        i += 2 + length
    raise ValueError("JPEG without a frame header")
