"""A lean reader of a rosbag2 bag's one MCAP file: the same ``(topic, receive ns, raw)``
stream as ``rosbags``' reader, at a fraction of its cost per message.

``rosbags`` wraps every record of a chunk in ``BytesIO`` objects and named tuples and merges
all chunks through a heap: per message, that costs about as much as the conversion.
This reads each chunk once (``rosbags``' own ``decompress``: the same size and CRC checks)
and walks its records with ``struct.unpack_from``; large messages (images) are views of
the chunk, small ones copies (an IMU message kept for a batch must not keep its chunk).  Its order is ``rosbags``' order: by receive time, ties by chunk position, a chunk's
messages stably sorted; it is used only when concatenating the chunks in file order gives
that order (each chunk starts no earlier than the one before it ends, as writers that
write in time order produce), else :func:`lean_messages` returns None and ``rosbags``
reads the bag.  Tested message for message against ``rosbags``.
"""

from __future__ import annotations

import struct
from pathlib import Path

_REC = struct.Struct("<BQ")  # opcode, record length
_MSG = struct.Struct("<HIQ")  # channel id, sequence, log time (publish time follows)
_CRC = struct.Struct("<I")
_OP_MESSAGE = 0x05
_VIEW_MIN = 1 << 16  # messages larger than this are yielded as views of their chunk


def mcap_file(folder: str) -> Path | None:
    """The rosbag2 folder's storage file when it is exactly one ``.mcap`` (and no ``.db3``)."""
    p = Path(folder)
    files = [f for f in p.iterdir() if f.suffix in (".mcap", ".db3")] if p.is_dir() else []
    return files[0] if len(files) == 1 and files[0].suffix == ".mcap" else None


def lean_messages(path: Path):
    """``messages(names, start, stop)`` over ``path``, or None where the file does not suit
    (no chunk index, or chunks out of time order)."""
    from mcap.reader import make_reader
    from rosbags.rosbag2.storage_mcap import decompress

    with open(path, "rb") as fh:
        summary = make_reader(fh).get_summary()
    if summary is None or not summary.chunk_indexes:
        return None
    chunks = sorted(summary.chunk_indexes, key=lambda c: c.chunk_start_offset)
    if any(a.message_end_time > b.message_start_time for a, b in zip(chunks, chunks[1:], strict=False)):
        return None
    topic_of = {cid: ch.topic for cid, ch in summary.channels.items()}

    def messages(names, start, stop):
        wanted = {cid: t for cid, t in topic_of.items() if t in set(names)}
        lo, hi = -1 if start is None else start, 2**64 if stop is None else stop
        with open(path, "rb") as fh:
            for c in chunks:
                if c.message_end_time < lo or c.message_start_time >= hi or not any(
                        cid in wanted for cid in c.message_index_offsets):
                    continue
                fh.seek(c.chunk_start_offset + 9 + 24)
                crc = _CRC.unpack(fh.read(4))[0]
                fh.seek(c.chunk_start_offset + 9 + 40 + len(c.compression))
                data = fh.read(c.compressed_size)
                if len(data) != c.compressed_size:
                    raise EOFError(f"chunk at {c.chunk_start_offset} is truncated")
                buf = decompress(data, c.compression, c.uncompressed_size, crc)
                yield from _chunk(buf, wanted, lo, hi)

    return messages


def _chunk(buf: bytes, wanted: dict, lo: int, hi: int) -> list:
    """The wanted messages of one decompressed chunk in [lo, hi), stably sorted by time."""
    view, pos, end, out = memoryview(buf), 0, len(buf), []
    rec, msg = _REC.unpack_from, _MSG.unpack_from
    while pos < end:
        op, size = rec(buf, pos)
        body = pos + 9
        if body + size > end:
            raise EOFError(f"a record at {pos} of a chunk runs past its end")
        if op == _OP_MESSAGE:
            cid, _, t = msg(buf, body)
            if cid in wanted and lo <= t < hi:  # big payloads as views; small ones copied (held longer:
                raw = view[body + 22:body + size] if size > _VIEW_MIN else buf[body + 22:body + size]  # a view
                out.append((wanted[cid], t, raw))  # would keep its whole chunk alive)
        pos = body + size
    if any(a[1] > b[1] for a, b in zip(out, out[1:], strict=False)):
        out.sort(key=lambda m: m[1])
    return out
