"""One reading interface over every bag format, and the named errors of a bad bag.

* ROS 1 ``.bag`` (one or several split parts) and rosbag2 folders (sqlite3 or MCAP storage,
  with ``metadata.yaml``): ``rosbags``' ``AnyReader``; older sqlite3 bags carry no message
  definitions, so the ROS 2 Humble type store stands in for them.
* A lone ``.mcap`` file (no ``metadata.yaml``, e.g. written with ``mcap-ros2-support``): the
  ``mcap`` reader, deserialised by a ``rosbags`` type store built from the file's schemas.

Every reader error becomes :class:`BagError` ``corrupt-bag`` naming the files.
"""

from __future__ import annotations

import struct
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.data.importer.mcapfast import lean_messages, mcap_file


class BagError(Exception):
    """A bag that cannot become a recording: ``kind`` is one of ``missing-topic``,
    ``wrong-type``, ``empty-bag``, ``corrupt-bag``, ``clock-backwards``, ``no-messages``,
    ``not-a-bag``, ``conversion-failed`` (a message the importer does not handle); ``source`` names the recording (or path)."""

    def __init__(self, kind: str, source: str, detail: str) -> None:
        self.kind, self.source, self.detail = kind, source, detail
        super().__init__(f"{kind}: {source}: {detail}")

    def __reduce__(self):  # crosses process boundaries (Dask's processes scheduler)
        return (BagError, (self.kind, self.source, self.detail))


@dataclass(frozen=True)
class BagSource:
    """One recording's files: ``kind`` ``ros1`` (split parts in order), ``rosbag2`` (a
    folder) or ``mcap`` (a lone file)."""

    name: str
    kind: str
    paths: tuple[str, ...]


class Bag:
    """An open bag: ``topics`` maps name -> (message type, message count); ``span`` is
    (first, last) receive time in ns; ``cdr``: every message is little-endian-capable ROS 2
    CDR (the raw fast paths of :mod:`pipeline.data.importer.cdr` may read it)."""

    def __init__(self, topics: dict[str, tuple[str, int]], messages, deserialize, span=(0, 0),
                 cdr: bool = False) -> None:
        self.topics, self._messages, self.deserialize = topics, messages, deserialize
        self.span, self.cdr = span, cdr

    def messages(self, topics, start: int | None = None, stop: int | None = None):
        """``(topic, receive_ns, raw bytes)`` of ``topics`` received in [start, stop) ns
        (None: unbounded), in receive order."""
        return self._messages(list(topics), start, stop)


def _reader_errors() -> tuple[type[BaseException], ...]:
    import sqlite3

    from mcap.exceptions import McapError
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as R1
    from rosbags.rosbag2 import ReaderError as R2
    from rosbags.serde import SerdeError

    return (AnyReaderError, R1, R2, SerdeError, McapError, sqlite3.Error, struct.error, EOFError, OSError,
            KeyError, IndexError, ValueError, AssertionError)


@contextmanager
def open_bag(src: BagSource):
    """Yield a :class:`Bag` for ``src``; reader errors raise :class:`BagError` ``corrupt-bag``."""
    errors = _reader_errors()
    try:
        with (_open_mcap(src) if src.kind == "mcap" else _open_any(src)) as bag:
            yield _Guarded(bag, src, errors)
    except BagError:
        raise
    except errors as exc:
        raise BagError("corrupt-bag", src.name, f"cannot read {', '.join(src.paths)}: "
                       f"{type(exc).__name__}: {exc}") from None


class _Guarded(Bag):
    """Reader errors while iterating or deserialising also become ``corrupt-bag``."""

    def __init__(self, bag: Bag, src: BagSource, errors) -> None:
        super().__init__(bag.topics, bag._messages, self._deserialize, bag.span, bag.cdr)
        self._src, self._errors, self._raw_deserialize = src, errors, bag.deserialize

    def _deserialize(self, raw, msgtype):
        try:
            return self._raw_deserialize(raw.tobytes() if isinstance(raw, memoryview) else raw, msgtype)
        except self._errors as exc:
            raise BagError("corrupt-bag", self._src.name, f"a {msgtype} message does not deserialize: "
                           f"{type(exc).__name__}: {exc}") from None

    def messages(self, topics, start: int | None = None, stop: int | None = None):
        try:
            yield from self._messages(list(topics), start, stop)
        except self._errors as exc:
            raise BagError("corrupt-bag", self._src.name, f"reading {', '.join(self._src.paths)} failed "
                           f"(truncated or corrupt?): {type(exc).__name__}: {exc}") from None


@contextmanager
def _open_any(src: BagSource):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    reader = AnyReader([Path(p) for p in src.paths], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
    reader.open()
    try:
        topics = {n: (info.msgtype or "?", int(info.msgcount)) for n, info in reader.topics.items()}

        cdr = reader.is2 and all(getattr(c.ext, "serialization_format", "cdr") == "cdr" for c in reader.connections)
        one = mcap_file(src.paths[0]) if src.kind == "rosbag2" and cdr else None
        lean = lean_messages(one) if one is not None else None  # same stream, less per message

        def messages(names, start, stop):
            conns = [c for c in reader.connections if c.topic in names]
            if not conns:
                return
            if lean is not None:
                yield from lean(names, start, stop)
                return
            for conn, t, raw in reader.messages(connections=conns, start=start, stop=stop):
                yield conn.topic, int(t), raw

        span = (int(reader.start_time), int(reader.end_time) - 1) if reader.connections else (0, 0)
        yield Bag(topics, messages, reader.deserialize, span, cdr)
    finally:
        reader.close()


@contextmanager
def _open_mcap(src: BagSource):
    from mcap.reader import make_reader
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

    with open(src.paths[0], "rb") as fh:
        reader = make_reader(fh)
        summary = reader.get_summary()
        if summary is None or summary.statistics is None:
            raise BagError("corrupt-bag", src.name, f"{src.paths[0]} has no summary section (truncated MCAP?)")
        store = get_typestore(Stores.EMPTY)
        for schema in summary.schemas.values():
            text = schema.data.decode()
            store.register(get_types_from_idl(text) if schema.encoding == "ros2idl"
                           else get_types_from_msg(text, schema.name))
        counts = summary.statistics.channel_message_counts
        topics = {}
        for cid, ch in summary.channels.items():
            schema = summary.schemas.get(ch.schema_id)
            name, n = schema.name if schema else "?", counts.get(cid, 0)
            old = topics.get(ch.topic, (name, 0))
            topics[ch.topic] = (name if old[0] == name else "?", old[1] + n)

        def messages(names, start, stop):
            for _, channel, message in reader.iter_messages(topics=names, starting_at=start, ending_before=stop,
                                                            log_time_order=True):
                yield channel.topic, int(message.log_time), message.data

        st = summary.statistics
        cdr = all(ch.message_encoding == "cdr" for ch in summary.channels.values())
        yield Bag(topics, messages, store.deserialize_cdr, (int(st.message_start_time), int(st.message_end_time)), cdr)
