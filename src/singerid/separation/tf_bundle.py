"""Read (and, for tests, write) TensorFlow checkpoint tensor bundles without TensorFlow.

A bundle is `PREFIX.index` — an SSTable (LevelDB table) mapping tensor names to `BundleEntryProto` messages (dtype,
shape, shard, offset, size) — plus `PREFIX.data-0000k-of-0000n` files holding the raw little-endian tensor bytes.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = 0xDB4775248B80FB57
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64, 10: np.bool_,
          17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}
DTYPE_IDS = {np.dtype(v): k for k, v in DTYPES.items()}


class BundleError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if pos >= len(buf):
            raise BundleError("truncated varint")
        b = buf[pos]
        pos += 1
        out |= (b & 0x7F) << shift
        if not b & 0x80:
            return out, pos
        shift += 7


def _enc_varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _block_entries(block: bytes):
    """Yield (key, value) of one SSTable block (prefix-compressed keys, restart array at the end)."""
    n_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + vlen]
        pos += vlen


def _read_block(data: bytes, handle: bytes) -> bytes:
    off, p = _varint(handle, 0)
    size, _ = _varint(handle, p)
    if off + size + 5 > len(data):
        raise BundleError("block handle beyond end of index file")
    if data[off + size] != 0:
        raise BundleError(f"compressed SSTable block (type {data[off + size]}) is not supported")
    return data[off : off + size]


def _fields(msg: bytes):
    """Yield (field number, wire type, value) of a protobuf message (varint, fixed32/64 and length-delimited)."""
    pos = 0
    while pos < len(msg):
        tag, pos = _varint(msg, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            v, pos = _varint(msg, pos)
        elif wire == 1:
            v, pos = msg[pos : pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(msg, pos)
            v, pos = msg[pos : pos + n], pos + n
        elif wire == 5:
            v, pos = msg[pos : pos + 4], pos + 4
        else:
            raise BundleError(f"unsupported protobuf wire type {wire}")
        yield field, wire, v


def _entry(msg: bytes) -> dict:
    e = {"dtype": 0, "shape": [], "shard": 0, "offset": 0, "size": 0}
    for f, _, v in _fields(msg):
        if f == 1:
            e["dtype"] = v
        elif f == 2:
            for df, _, dv in _fields(v):
                if df == 2:
                    e["shape"].append(next((x for ff, _, x in _fields(dv) if ff == 1), 0))
        elif f == 3:
            e["shard"] = v
        elif f == 4:
            e["offset"] = v
        elif f == 5:
            e["size"] = v
        elif f == 7:
            raise BundleError("sliced tensors are not supported")
    return e


def read_index(prefix: str | Path) -> dict[str, dict]:
    """Tensor name → {dtype, shape, shard, offset, size}."""
    data = Path(f"{prefix}.index").read_bytes()
    if len(data) < 48 or struct.unpack_from("<Q", data, len(data) - 8)[0] != MAGIC:
        raise BundleError(f"{prefix}.index: not an SSTable (bad magic)")
    footer = data[-48:]
    _, p = _varint(footer, 0)
    _, p = _varint(footer, p)
    index = _read_block(data, footer[p:])
    out = {}
    for _, handle in _block_entries(index):
        for key, value in _block_entries(_read_block(data, handle)):
            if key:  # the empty key holds the BundleHeaderProto
                out[key.decode()] = _entry(value)
    return out


def read_bundle(prefix: str | Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Numeric tensors of a bundle (all, or `names`) as numpy arrays."""
    index = read_index(prefix)
    n_shards = 1 + max((e["shard"] for e in index.values()), default=0)
    shards: dict[int, bytes] = {}
    out = {}
    for name, e in index.items():
        if (names is not None and name not in names) or e["dtype"] not in DTYPES:
            continue
        if e["shard"] not in shards:
            shards[e["shard"]] = Path(f"{prefix}.data-{e['shard']:05d}-of-{n_shards:05d}").read_bytes()
        raw = shards[e["shard"]][e["offset"] : e["offset"] + e["size"]]
        if len(raw) != e["size"]:
            raise BundleError(f"{name}: data file truncated")
        out[name] = np.frombuffer(raw, dtype=DTYPES[e["dtype"]]).reshape(e["shape"]).copy()
    missing = set(names or []) - set(out)
    if missing:
        raise BundleError(f"{prefix}: tensors not found: {sorted(missing)[:5]}")
    return out


def _block(entries: list[tuple[bytes, bytes]]) -> bytes:
    body, restarts = bytearray(), []
    for k, v in entries:  # restart at every entry: no shared prefixes
        restarts.append(len(body))
        body += _enc_varint(0) + _enc_varint(len(k)) + _enc_varint(len(v)) + k + v
    for r in restarts or [0]:
        body += struct.pack("<I", r)
    body += struct.pack("<I", len(restarts or [0]))
    return bytes(body)


def write_bundle(prefix: str | Path, tensors: dict[str, np.ndarray]) -> None:
    """Write a single-shard bundle readable by TensorFlow's format (uncompressed blocks, CRCs left zero)."""
    data, entries = bytearray(), []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        shape = b"".join(b"\x12" + _enc_varint(len(d)) + d for d in (b"\x08" + _enc_varint(int(s)) for s in a.shape))
        msg = (b"\x08" + _enc_varint(DTYPE_IDS[a.dtype]) + b"\x12" + _enc_varint(len(shape)) + shape
               + b"\x20" + _enc_varint(len(data)) + b"\x28" + _enc_varint(a.nbytes))
        entries.append((name.encode(), msg))
        data += a.tobytes()
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))
    header = (b"", b"\x08\x01")  # BundleHeaderProto: num_shards = 1
    out = bytearray()
    blk = _block([header, *entries])
    data_handle = _enc_varint(0) + _enc_varint(len(blk))
    out += blk + b"\x00" + b"\x00" * 4
    meta = _block([])
    meta_handle = _enc_varint(len(out)) + _enc_varint(len(meta))
    out += meta + b"\x00" * 5
    idx = _block([(entries[-1][0] if entries else b"", data_handle)])
    idx_handle = _enc_varint(len(out)) + _enc_varint(len(idx))
    out += idx + b"\x00" * 5
    footer = meta_handle + idx_handle
    out += footer + b"\x00" * (40 - len(footer)) + struct.pack("<Q", MAGIC)
    Path(f"{prefix}.index").write_bytes(bytes(out))
