"""How many frames a video file holds and how long it plays: MP4 (ISO BMFF) and
WebM/Matroska (EBML), read from the container's own tables, no frame decoded.

A metered video price captures by the frames a job made, so this reads files a GPU
backend wrote: it must never trust them. Every size is checked against its parent and
the file's end, only known containers are entered (so nesting is shallow), the number
of elements visited is capped, tables read into memory are capped, and every step
moves forward (no loops). Anything it cannot read whole raises `UnreadableVideo`, and
nothing else.

- MP4: the first track whose `hdlr` says `vide`; frames are the `stts` sample counts
  (or `stsz`'s sample count), seconds the `mdhd` duration over its timescale.
  Fragmented MP4 (samples in `moof`) is not read: it raises.
- WebM/Matroska: the first track of type video; frames are its SimpleBlocks and
  Blocks in the Clusters (laced blocks count each frame), seconds the Info Duration
  times TimecodeScale (or frames x DefaultDuration when Duration is missing).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

MAX_ELEMENTS = 2_000_000  # boxes/elements visited in one file (~10 h of 60 fps blocks)
MAX_TABLE_BYTES = 16 * 1024 * 1024  # one box or element read into memory (an stts)
MAX_NUMBER_BYTES = 8  # EBML integers and floats


class UnreadableVideo(ValueError):
    """The file is not a whole MP4 or WebM we can count frames in."""


@dataclass(frozen=True)
class VideoFacts:
    """What a video file holds: its frame count and how long it plays."""

    frames: int
    seconds: Fraction


def video_facts(stream: BinaryIO) -> VideoFacts:
    """The frames and seconds of an MP4 or WebM file (by content, not by name)."""
    reader = _Reader(stream)
    head = reader.peek(12)
    if len(head) >= 8 and head[4:8] == b"ftyp":
        return _mp4_facts(reader)
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return _matroska_facts(reader)
    raise UnreadableVideo("neither an MP4 (ftyp) nor a WebM/Matroska (EBML) file")


def video_facts_of_bytes(data: bytes) -> VideoFacts:
    """`video_facts` of bytes in memory."""
    return video_facts(io.BytesIO(data))


class _Reader:
    """Bounded reads at absolute offsets, counting every element visited."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        stream.seek(0, io.SEEK_END)
        self.size = stream.tell()
        self.visited = 0

    def peek(self, count: int) -> bytes:
        return self.read_at(0, min(count, self.size))

    def read_at(self, offset: int, count: int) -> bytes:
        if count > MAX_TABLE_BYTES:
            raise UnreadableVideo(f"a {count}-byte table is larger than we read")
        if offset < 0 or offset + count > self.size:
            raise UnreadableVideo("truncated: a read runs past the end of the file")
        self.stream.seek(offset)
        data = self.stream.read(count)
        if len(data) != count:
            raise UnreadableVideo("truncated: the file ended early")
        return data

    def visit(self) -> None:
        self.visited += 1
        if self.visited > MAX_ELEMENTS:
            raise UnreadableVideo(f"more than {MAX_ELEMENTS} boxes or elements")


# --- MP4 (ISO BMFF) ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Box:
    kind: bytes
    start: int  # of the payload
    end: int


def _boxes(reader: _Reader, start: int, end: int) -> list[_Box]:
    """The boxes laid end to end in [start, end)."""
    found: list[_Box] = []
    at = start
    while at < end:
        reader.visit()
        if end - at < 8:
            raise UnreadableVideo("truncated: a box header is cut short")
        size, kind = struct.unpack(">I4s", reader.read_at(at, 8))
        header = 8
        if size == 1:  # a 64-bit size follows the type
            (size,) = struct.unpack(">Q", reader.read_at(at + 8, 8))
            header = 16
        elif size == 0:  # runs to the end of its parent
            size = end - at
        if size < header or at + size > end:
            raise UnreadableVideo(f"box {kind!r} at {at} claims {size} bytes it does not have")
        found.append(_Box(kind, at + header, at + size))
        at += size
    return found


def _child(reader: _Reader, parent: _Box, kind: bytes) -> _Box | None:
    return next((b for b in _boxes(reader, parent.start, parent.end) if b.kind == kind), None)


def _mp4_facts(reader: _Reader) -> VideoFacts:
    top = _boxes(reader, 0, reader.size)
    moov = next((b for b in top if b.kind == b"moov"), None)
    if moov is None:
        raise UnreadableVideo("an MP4 without a moov box")
    for trak in (b for b in _boxes(reader, moov.start, moov.end) if b.kind == b"trak"):
        mdia = _child(reader, trak, b"mdia")
        if mdia is None:
            continue
        hdlr = _child(reader, mdia, b"hdlr")
        if hdlr is None or _payload(reader, hdlr, 12)[8:12] != b"vide":
            continue
        return VideoFacts(frames=_mp4_frames(reader, mdia), seconds=_mp4_seconds(reader, mdia))
    raise UnreadableVideo("an MP4 without a video track")


def _payload(reader: _Reader, box: _Box, least: int) -> bytes:
    """A small box's payload, at least `least` bytes long."""
    if box.end - box.start < least:
        raise UnreadableVideo(f"box {box.kind!r} is too short")
    return reader.read_at(box.start, box.end - box.start)


def _mp4_seconds(reader: _Reader, mdia: _Box) -> Fraction:
    mdhd = _child(reader, mdia, b"mdhd")
    if mdhd is None:
        raise UnreadableVideo("a video track without an mdhd box")
    data = _payload(reader, mdhd, 24)
    if data[0] == 1:  # version 1: 64-bit times
        if len(data) < 36:
            raise UnreadableVideo("mdhd version 1 is too short")
        timescale, duration = struct.unpack(">IQ", data[20:32])
    else:
        timescale, duration = struct.unpack(">II", data[12:20])
    if timescale == 0:
        raise UnreadableVideo("mdhd says a timescale of 0")
    return Fraction(duration, timescale)


def _mp4_frames(reader: _Reader, mdia: _Box) -> int:
    minf = _child(reader, mdia, b"minf")
    stbl = _child(reader, minf, b"stbl") if minf is not None else None
    if stbl is None:
        raise UnreadableVideo("a video track without a sample table")
    tables = {b.kind: b for b in _boxes(reader, stbl.start, stbl.end)}
    if b"stts" in tables:
        return _stts_samples(_payload(reader, tables[b"stts"], 8))
    if b"stsz" in tables:
        return int(struct.unpack(">I", _payload(reader, tables[b"stsz"], 12)[8:12])[0])
    raise UnreadableVideo("a sample table without stts or stsz")


def _stts_samples(data: bytes) -> int:
    (count,) = struct.unpack(">I", data[4:8])
    if len(data) < 8 + 8 * count:
        raise UnreadableVideo(f"stts lists {count} entries it does not have")
    return sum(struct.unpack_from(">I", data, 8 + 8 * i)[0] for i in range(count))


# --- WebM / Matroska (EBML) ---------------------------------------------------------------

_EBML, _SEGMENT, _INFO, _TRACKS, _CLUSTER = (
    0x1A45DFA3,
    0x18538067,
    0x1549A966,
    0x1654AE6B,
    0x1F43B675,
)
_TIMECODE_SCALE, _DURATION = 0x2AD7B1, 0x4489
_TRACK_ENTRY, _TRACK_NUMBER, _TRACK_TYPE, _DEFAULT_DURATION = 0xAE, 0xD7, 0x83, 0x23E383
_SIMPLE_BLOCK, _BLOCK_GROUP, _BLOCK = 0xA3, 0xA0, 0xA1
# Segment children: an unknown-size Cluster ends where the next of these starts.
_SEGMENT_CHILDREN = {
    _CLUSTER,
    _INFO,
    _TRACKS,
    0x114D9B74,  # SeekHead
    0x1C53BB6B,  # Cues
    0x1941A469,  # Attachments
    0x1043A770,  # Chapters
    0x1254C367,  # Tags
}
_VIDEO_TRACK = 1
UNKNOWN = -1  # an element whose size is "unknown" (all ones): it runs to its parent's end


@dataclass(frozen=True)
class _Element:
    id: int
    start: int  # of the payload
    end: int  # of the payload (the parent's end when the size is unknown)
    sized: bool


def _vint(reader: _Reader, at: int, end: int, *, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at `at`: (value, its length); UNKNOWN when a size
    is all ones."""
    if at >= end:
        raise UnreadableVideo("truncated: an element header is cut short")
    first = reader.read_at(at, 1)[0]
    length = 9 - first.bit_length() if first else 9
    if length > 8 or at + length > end:
        raise UnreadableVideo(f"a malformed variable-length integer at {at}")
    raw = int.from_bytes(reader.read_at(at, length), "big")
    if keep_marker:
        return raw, length
    value = raw & ((1 << (7 * length)) - 1)
    return (UNKNOWN if value == (1 << (7 * length)) - 1 else value), length


def _element(reader: _Reader, at: int, end: int) -> _Element:
    reader.visit()
    element_id, id_length = _vint(reader, at, end, keep_marker=True)
    if id_length > 4:
        raise UnreadableVideo(f"an element id of {id_length} bytes at {at}")
    size, size_length = _vint(reader, at + id_length, end, keep_marker=False)
    start = at + id_length + size_length
    if size == UNKNOWN:
        return _Element(element_id, start, end, sized=False)
    if start + size > end:
        raise UnreadableVideo(f"element {element_id:#x} at {at} runs past its parent")
    return _Element(element_id, start, start + size, sized=True)


def _elements(reader: _Reader, start: int, end: int) -> list[_Element]:
    """The elements laid end to end in [start, end); only a Cluster may have an unknown
    size (it ends where the next Segment child begins)."""
    found: list[_Element] = []
    at = start
    while at < end:
        element = _element(reader, at, end)
        if not element.sized:
            if element.id != _CLUSTER:
                raise UnreadableVideo(f"element {element.id:#x} has an unknown size")
            element = _unknown_size_cluster(reader, element)
        found.append(element)
        at = element.end
    return found


def _unknown_size_cluster(reader: _Reader, cluster: _Element) -> _Element:
    """A Cluster written without its size (a live stream) ends at the next Segment child."""
    at = cluster.start
    while at < cluster.end:
        child = _element(reader, at, cluster.end)
        if child.id in _SEGMENT_CHILDREN:
            break
        if not child.sized:
            raise UnreadableVideo(f"element {child.id:#x} in a cluster has an unknown size")
        at = child.end
    return _Element(_CLUSTER, cluster.start, at, sized=True)


def _uint(reader: _Reader, element: _Element) -> int:
    return int.from_bytes(_number(reader, element), "big")


def _float(reader: _Reader, element: _Element) -> Fraction:
    data = _number(reader, element)
    if len(data) == 4:
        value: float = struct.unpack(">f", data)[0]
    elif len(data) == 8:
        value = struct.unpack(">d", data)[0]
    else:
        raise UnreadableVideo(f"a float of {len(data)} bytes")
    if value != value or value in (float("inf"), float("-inf")) or value < 0:
        raise UnreadableVideo("a duration that is not a finite, non-negative number")
    return Fraction(value)


def _number(reader: _Reader, element: _Element) -> bytes:
    length = element.end - element.start
    if length > MAX_NUMBER_BYTES:
        raise UnreadableVideo(f"a number of {length} bytes")
    return reader.read_at(element.start, length)


def _matroska_facts(reader: _Reader) -> VideoFacts:
    top = _top_level(reader)
    segment = next((e for e in top if e.id == _SEGMENT), None)
    if segment is None:
        raise UnreadableVideo("a Matroska file without a Segment")
    children = _elements(reader, segment.start, segment.end)
    scale, duration = _info(reader, [e for e in children if e.id == _INFO])
    track, default_ns = _video_track(reader, [e for e in children if e.id == _TRACKS])
    frames = sum(
        _cluster_frames(reader, cluster, track) for cluster in children if cluster.id == _CLUSTER
    )
    if duration is not None:
        seconds = duration * scale / 1_000_000_000
    else:
        seconds = Fraction(frames * default_ns, 1_000_000_000)
    return VideoFacts(frames=frames, seconds=seconds)


def _top_level(reader: _Reader) -> list[_Element]:
    """The EBML header and the Segment (a Segment of unknown size runs to the end)."""
    found: list[_Element] = []
    at = 0
    while at < reader.size:
        element = _element(reader, at, reader.size)
        found.append(element)
        if not element.sized and element.id != _SEGMENT:
            raise UnreadableVideo(f"top-level element {element.id:#x} has an unknown size")
        at = element.end
    return found


def _info(reader: _Reader, infos: list[_Element]) -> tuple[int, Fraction | None]:
    """TimecodeScale (ns per tick; 1 ms by default) and Duration (ticks), if given."""
    scale, duration = 1_000_000, None
    for info in infos[:1]:
        for element in _elements(reader, info.start, info.end):
            if element.id == _TIMECODE_SCALE:
                scale = _uint(reader, element)
            elif element.id == _DURATION:
                duration = _float(reader, element)
    if scale == 0:
        raise UnreadableVideo("a TimecodeScale of 0")
    return scale, duration


def _video_track(reader: _Reader, tracks: list[_Element]) -> tuple[int, int]:
    """The first video track's number and its DefaultDuration (ns per frame, 0 if none)."""
    for parent in tracks[:1]:
        for entry in _elements(reader, parent.start, parent.end):
            if entry.id != _TRACK_ENTRY:
                continue
            fields = {e.id: e for e in _elements(reader, entry.start, entry.end)}
            if _TRACK_TYPE in fields and _uint(reader, fields[_TRACK_TYPE]) == _VIDEO_TRACK:
                if _TRACK_NUMBER not in fields:
                    raise UnreadableVideo("a video track without a TrackNumber")
                default = fields.get(_DEFAULT_DURATION)
                return (
                    _uint(reader, fields[_TRACK_NUMBER]),
                    _uint(reader, default) if default is not None else 0,
                )
    raise UnreadableVideo("a Matroska file without a video track")


def _cluster_frames(reader: _Reader, cluster: _Element, track: int) -> int:
    frames = 0
    for element in _elements(reader, cluster.start, cluster.end):
        if element.id == _SIMPLE_BLOCK:
            frames += _block_frames(reader, element, track)
        elif element.id == _BLOCK_GROUP:
            blocks = _elements(reader, element.start, element.end)
            frames += sum(_block_frames(reader, b, track) for b in blocks if b.id == _BLOCK)
    return frames


def _block_frames(reader: _Reader, block: _Element, track: int) -> int:
    """1 for a block of this track (a laced block: its frame count), else 0."""
    number, length = _vint(reader, block.start, block.end, keep_marker=False)
    if number != track:
        return 0
    flags_at = block.start + length + 2  # after the track number and the 16-bit timecode
    if flags_at >= block.end:
        raise UnreadableVideo("a block cut short")
    lacing = reader.read_at(flags_at, 1)[0] & 0x06
    if not lacing:
        return 1
    if flags_at + 1 >= block.end:
        raise UnreadableVideo("a laced block cut short")
    return reader.read_at(flags_at + 1, 1)[0] + 1
