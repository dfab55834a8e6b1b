"""A .blend's external data — the files its own data-blocks read from outside it: image textures, sounds, fonts,
volumes, movie clips, Alembic/USD caches, linked libraries — for render workers on other machines.

On the sending machine :func:`sendable` lists the files a worker elsewhere can be sent (one file each, not packed,
present here, not a library) and :func:`present` every such path that exists here. A worker writes the files it was
sent where it likes and, once it has opened the snapshot, :func:`redirect` points those data-blocks at its copies
and every other one at the absolute path the sender read; :func:`missing` then names what it still reads from a
path absent there but present on the sender (an image, clip or volume sequence, a UDIM set, a linked library): that
worker's renders would not be the sender's. Paths inside modifiers and nodes (a mesh cache, an IES file) are not
followed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import bpy

# Collections of data-blocks that read their file through ``filepath``, which can be pointed elsewhere.
COLLECTIONS = ("images", "sounds", "fonts", "volumes", "movieclips", "cache_files", "libraries")
SINGLE_FILE_IMAGES = {"FILE", "MOVIE"}  # not an image sequence or a UDIM set: many files under one pattern


def _blocks() -> Iterable[tuple[str, bpy.types.ID]]:
    """(collection, data-block) of the open file's own data-blocks that read an unpacked file."""
    for collection in COLLECTIONS:
        for block in getattr(bpy.data, collection):
            if getattr(block, "library", None) is not None or getattr(block, "packed_file", None) is not None:
                continue
            if block.filepath and not (collection == "fonts" and block.filepath == "<builtin>"):
                yield collection, block


def _located() -> Iterable[tuple[str, bpy.types.ID, str]]:
    """:func:`_blocks` with the absolute path each reads."""
    for collection, block in _blocks():
        yield collection, block, _absolute(block)


def _absolute(block: bpy.types.ID, start: str | None = None) -> str:
    """The absolute path ``block`` reads, its relative path taken from the folder ``start`` (default: the open
    file's)."""
    return os.path.normpath(bpy.path.abspath(block.filepath, start=start))


def _sendable(collection: str, block: bpy.types.ID) -> bool:
    """Whether ``block`` reads one file (a sequence's frames, a UDIM set's tiles, a library's own data are many)."""
    if collection == "images":
        return block.source in SINGLE_FILE_IMAGES
    if collection == "movieclips":
        return block.source == "MOVIE"
    if collection == "volumes":
        return not block.is_sequence
    return collection != "libraries"


def sendable() -> list[str]:
    """Absolute paths of the files a worker on another machine can be sent (see the module)."""
    return sorted(
        {path for collection, block, path in _located() if _sendable(collection, block) and os.path.isfile(path)}
    )


def present() -> list[str]:
    """Absolute paths of every file (or library) the open file's own data-blocks read that exists here."""
    return sorted({path for _, _, path in _located() if os.path.exists(path)})


def redirect(copies: Mapping[str, str], origin: str) -> None:
    """Point the data-blocks that read a file of ``copies`` (the sender's absolute path → this machine's copy) at
    the copy and every other one at the absolute path the sender read: relative paths taken from ``origin``, the
    folder of the snapshot as the sender saved it."""
    for collection, block in list(_blocks()):
        path = _absolute(block, origin)
        wanted = copies.get(path, path) if _sendable(collection, block) else path
        if wanted == _absolute(block):
            continue
        block.filepath = wanted
        if collection in ("images", "libraries"):
            block.reload()


def missing(present_there: Sequence[str]) -> list[str]:
    """What the open file's own data-blocks read from a path that does not exist here but exists on the sender
    (``present_there``: its :func:`present`), after :func:`redirect`."""
    there = set(present_there)
    return sorted({path for _, _, path in _located() if path in there and not os.path.exists(path)})
