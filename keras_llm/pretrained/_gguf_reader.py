"""GGUF's container format: the metadata and the table of tensors, read with `struct` from a memory map.

`gguf.GGUFReader` builds a Python object for every element of every metadata
array, which for a 49,152-token vocabulary took 6 to 13 s of a 20 s load;
this reader decodes the metadata directly (0.2 s) and leaves each tensor's
bytes in the memory map until it is dequantized (with `gguf.quants`).
Layout (GGUF v2 and v3, little-endian): magic, version, tensor and key
counts; the key/value pairs; each tensor's name, dimensions, type and offset;
the tensor data from the next multiple of `general.alignment`.
"""

import collections
import mmap
import struct

import numpy as np

Tensor = collections.namedtuple("Tensor", "name tensor_type shape data")
Tensor.__doc__ = """A tensor of the file: `shape` in GGUF's order (fastest dimension first), `data` its
bytes (float32 or float16 values, or quantized blocks) as a uint8 array of `gguf.quants`' byte shape."""

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


class GGUFFile:
    """A GGUF file's metadata (`metadata`: key -> value) and tensors (`tensors`: `Tensor`s).

    Raises ValueError (with its cause; the caller names the file) when the
    file is not GGUF v2/v3, is cut short, or holds a type it does not know.
    """

    def __init__(self, path):
        import gguf

        with open(path, "rb") as f:
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._at = 0
        if self._read(4) != b"GGUF":
            raise ValueError("it does not start with the GGUF magic bytes")
        version, tensor_count, key_count = self._unpack("<IQQ")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version}; versions 2 and 3 are read")
        self.metadata = {}
        for _ in range(key_count):
            key = self._string()
            self.metadata[key] = self._value(self._unpack("<I")[0])
        table = []
        for _ in range(tensor_count):
            name = self._string()
            (dimensions,) = self._unpack("<I")
            shape = self._unpack(f"<{dimensions}Q")
            kind, offset = self._unpack("<IQ")
            table.append((name, gguf.GGMLQuantizationType(kind), shape, offset))
        alignment = self.metadata.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT)
        start = -(-self._at // alignment) * alignment
        self.tensors = []
        for name, kind, shape, offset in table:
            byte_shape = gguf.quants.quant_shape_to_byte_shape(tuple(reversed(shape)), kind)
            size = int(np.prod(byte_shape))
            if start + offset + size > len(self._map):
                raise ValueError(f"the tensor {name!r} runs past the end of the file")
            data = np.frombuffer(self._map, np.uint8, size, start + offset).reshape(byte_shape)
            self.tensors.append(Tensor(name, kind, shape, data))

    def _read(self, size):
        if self._at + size > len(self._map):
            raise ValueError("the metadata runs past the end of the file")
        self._at += size
        return self._map[self._at - size:self._at]

    def _unpack(self, layout):
        return struct.unpack(layout, self._read(struct.calcsize(layout)))

    def _string(self):
        return self._read(self._unpack("<Q")[0]).decode("utf-8")

    def _value(self, kind):
        if kind in _SCALARS:
            return self._unpack(_SCALARS[kind])[0]
        if kind == _STRING:
            return self._string()
        if kind == _ARRAY:
            item, count = self._unpack("<IQ")
            if item in _SCALARS:  # token types, scores: one read
                layout = _SCALARS[item]
                return list(self._unpack(f"{layout[0]}{count}{layout[1]}"))
            return [self._value(item) for _ in range(count)]
        raise ValueError(f"a metadata value of unknown type {kind}")
