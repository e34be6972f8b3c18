"""Git's object store read without git, for the staged half of git_state's `dirty`.

- `Store` reads an object by its id: loose, or from a pack (index version 2), whole or rebuilt
  from offset and reference deltas; alternates followed. An object must hash to its id and a
  pack match its index (object count, checksum): nothing corrupt or cut is read as an object.
- `staged`: whether an index differs from a commit's tree, path by path as `git diff-index
  --cached` compares them. The index's trees are hashed as `git write-tree` hashes them; only
  folders whose ids differ are read (modes as git reads them; a folder holding no file is none).
- Bounded: a Store reads at most MAX_OBJECTS objects (a delta counts as one), inflates or
  rebuilds at most MAX_BYTES bytes, MAX_OBJECT_BYTES for one object or delta, follows at most
  MAX_DELTA_CHAIN deltas for one object. Files (here and for git_state) are opened and read
  by runner/config/files.py: regular files only, bounded. Past a bound, or whatever does not
  parse, check or exist: `Unknown`, never a guess. Nothing runs.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import struct
import zlib
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterable, List, Optional, Tuple

from runner.config import files
from runner.errors import ConfigError

MAX_OBJECTS = 10_000  # objects read by one Store (each delta of a chain counts)
MAX_BYTES = 64 << 20  # bytes inflated or rebuilt from deltas by one Store
MAX_OBJECT_BYTES = 16 << 20  # one object or one delta
MAX_DELTA_CHAIN = 300  # deltas followed for one object (git writes at most 50 by default)
MAX_PACKS = 1000  # pack indexes in an objects folder
MAX_ALTERNATES = 16  # objects folders, alternates included
MAX_TEXT_BYTES = 1 << 20  # HEAD, a ref, commondir, a .git file, alternates, a config or attributes file
COMMIT, TREE, BLOB, TAG = 1, 2, 3, 4
_NAMES = {COMMIT: b"commit", TREE: b"tree", BLOB: b"blob", TAG: b"tag"}
_TYPES = {name: kind for kind, name in _NAMES.items()}
_FOLDER = 0o40000
_TREE_ENTRY = re.compile(rb"([0-7]{5,6}) ([^/\0]+)\0(.{20})", re.S)

Tree = Dict[bytes, Tuple[int, bytes]]  # name -> (mode, id)


class Unknown(Exception):
    """Something cannot be read with certainty: the answer is unknown, not a guess."""


def read_file(path: Any, limit: int) -> Optional[bytes]:
    """A regular file's bytes (symlinks followed) through files.read_bounded; None when missing
    or a folder; Unknown when over `limit` bytes, not a regular file, or not readable."""
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return None
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:  # a symlink loop, a folder not searchable
        raise Unknown(f"{path!r}: {e.strerror}") from None
    try:
        return files.read_bounded(Path(path), "git", limit)
    except ConfigError as e:  # gone since, a FIFO or device, too large
        raise Unknown(str(e)) from None


def staged(objects: Path, commit: bytes, entries: Iterable[Tuple[bytes, int, bytes]]) -> bool:
    """Whether index entries (path, mode, id; none unmerged or intent-to-add) differ from the
    tree of `commit`, as `git diff-index --cached` compares them."""
    index, store = _index_trees(entries), Store(objects)
    try:
        kind, body = store.read(commit)
        m = re.match(rb"tree ([0-9a-f]{40})\n", body)
        if kind != COMMIT or not m:
            raise Unknown("not a commit")
        todo = [(bytes.fromhex(m.group(1).decode()), b"")]
        while todo:
            oid, folder = todo.pop()
            tree_id, ours = index.get(folder, (b"", {}))
            if tree_id == oid:  # the same id: the same files below
                continue
            kind, body = store.read(oid)
            if kind != TREE:
                raise Unknown("not a tree")
            theirs = parse_tree(body)
            for name in sorted(ours.keys() | theirs.keys()):
                a, b = ours.get(name), theirs.get(name)
                if b is not None and b[0] == _FOLDER and (a is None or a[0] == _FOLDER):
                    todo.append((b[1], folder + b"/" + name if folder else name))  # may hold no file
                elif a != b:
                    return True
        return False
    finally:
        store.close()


def parse_tree(body: bytes) -> Tree:
    """A tree object's entries, each mode as git reads it (a file is 100644 or 100755)."""
    out: Tree = {}
    pos = 0
    while pos < len(body):
        m = _TREE_ENTRY.match(body, pos)
        if not m or m.group(2) in out or m.group(2) in (b".", b".."):
            raise Unknown("tree entry")
        mode, pos = int(m.group(1), 8), m.end()
        kind = mode & 0o170000
        if kind == 0o100000:
            kind |= 0o755 if mode & 0o100 else 0o644
        elif kind not in (_FOLDER, 0o120000, 0o160000):
            raise Unknown("tree entry mode")
        out[m.group(2)] = (kind, m.group(3))
    return out


def _index_trees(entries: Iterable[Tuple[bytes, int, bytes]]) -> Dict[bytes, Tuple[bytes, Tree]]:
    """Each folder of an index -> (the id `git write-tree` would give its tree, its entries)."""
    folders: Dict[bytes, Tree] = {b"": {}}
    for path, mode, oid in entries:
        folder, _, name = path.rpartition(b"/")
        parent = folder
        while parent not in folders:
            folders[parent] = {}
            parent = parent.rpartition(b"/")[0]
        if name in folders[folder]:
            raise Unknown("index path twice")
        folders[folder][name] = (mode, oid)
    out: Dict[bytes, Tuple[bytes, Tree]] = {}
    for folder in sorted(folders, key=lambda f: -1 if not f else f.count(b"/"), reverse=True):
        tree = folders[folder]
        names = sorted(tree, key=lambda n: n + b"/" if tree[n][0] == _FOLDER else n)
        body = b"".join(b"%o %s\0%s" % (tree[n][0], n, tree[n][1]) for n in names)
        out[folder] = (hashlib.sha1(b"tree %d\0%s" % (len(body), body)).digest(), tree)
        if folder:
            parent, _, name = folder.rpartition(b"/")
            if name in folders[parent]:
                raise Unknown("index path both a file and a folder")
            folders[parent][name] = (_FOLDER, out[folder][0])
    return out


class _Pack:
    """A pack index (version 2), read when listed; its pack is opened and checked when used."""

    def __init__(self, fd: int, path: Path):
        self.fd, self.path, self.data, self.size = fd, path, -1, 0
        head = os.pread(fd, 1032, 0)
        if head[:8] != b"\xfftOc\0\0\0\2":
            raise Unknown("pack index version")
        self.fanout = struct.unpack_from(">256I", head, 8)
        self.count = self.fanout[255]
        idx_size = os.fstat(fd).st_size
        extra = idx_size - 1072 - 28 * self.count  # the 8-byte offsets, past 31 bits
        if extra < 0 or extra % 8 or any(a > b for a, b in zip(self.fanout, self.fanout[1:])):
            raise Unknown("pack index")
        self.large = extra // 8
        self.checksum = os.pread(fd, 20, idx_size - 40)  # the pack's own trailing checksum

    def offset(self, oid: bytes) -> Optional[int]:
        """Where `oid` starts in the pack; None when the pack does not hold it."""
        lo, hi = self.fanout[oid[0] - 1] if oid[0] else 0, self.fanout[oid[0]]
        while lo < hi:
            mid = (lo + hi) // 2
            name = os.pread(self.fd, 20, 1032 + 20 * mid)
            if name == oid:
                break
            lo, hi = (mid + 1, hi) if name < oid else (lo, mid)
        else:
            return None
        (offset,) = struct.unpack(">I", os.pread(self.fd, 4, 1032 + 24 * self.count + 4 * mid))
        if offset & 0x80000000:
            if offset & 0x7FFFFFFF >= self.large:
                raise Unknown("pack index offset")
            at = 1032 + 28 * self.count + 8 * (offset & 0x7FFFFFFF)
            (offset,) = struct.unpack(">Q", os.pread(self.fd, 8, at))
        return offset


class Store:
    """The objects of a repository (its `objects` folder and alternates), read with the bounds
    of the module's docstring; `close` closes the files it keeps open."""

    def __init__(self, objects: Path):
        self.files: List[BinaryIO] = []
        self.folders = _alternates(objects)
        self.packs: Optional[List[_Pack]] = None
        self.objects_left, self.bytes_left = MAX_OBJECTS, MAX_BYTES

    def close(self) -> None:
        while self.files:
            self.files.pop().close()

    def read(self, oid: bytes) -> Tuple[int, bytes]:
        """(kind, content) of an object: COMMIT, TREE, BLOB or TAG; checked against its id."""
        try:
            kind, data = self._object(oid)
        except (OSError, ValueError, IndexError, struct.error, zlib.error) as e:
            raise Unknown(f"object {oid.hex()}: {type(e).__name__}") from e
        if hashlib.sha1(b"%s %d\0%s" % (_NAMES[kind], len(data), data)).digest() != oid:
            raise Unknown(f"object {oid.hex()} does not hash to its id")
        return kind, data

    def _object(self, oid: bytes) -> Tuple[int, bytes]:
        deltas: List[bytes] = []
        target: Optional[bytes] = oid  # the object next in the chain, or None: at `offset`
        pack: Optional[_Pack] = None
        offset = 0
        while True:
            if len(deltas) > MAX_DELTA_CHAIN:
                raise Unknown("delta chain too long")
            if target is not None:
                loose = self._loose(target)
                if loose is not None:
                    kind, data = loose
                    break
                pack, offset = self._packed(target)
            assert pack is not None
            kind, size, pos, offset, target = self._entry(pack, offset)
            data = self._inflate(pack, pos, size)
            if kind < 6:
                break
            deltas.append(data)
        for delta in reversed(deltas):
            data = self._patch(data, delta)
        return kind, data

    def _spend(self, size: int, objects: int) -> None:
        """Count an object or delta read (`objects` 1) or rebuilt (0) against the bounds."""
        self.bytes_left, self.objects_left = self.bytes_left - size, self.objects_left - objects
        if size > MAX_OBJECT_BYTES or self.bytes_left < 0 or self.objects_left < 0:
            raise Unknown(f"past a bound: {size} bytes, or over {MAX_BYTES} bytes or {MAX_OBJECTS} objects")

    def _open(self, path: Path) -> int:
        """A descriptor on a regular file, kept open until `close`."""
        try:
            f = files.open_regular(path, "git")
        except ConfigError as e:  # missing, a FIFO or device
            raise Unknown(str(e)) from None
        self.files.append(f)
        return f.fileno()

    def _loose(self, oid: bytes) -> Optional[Tuple[int, bytes]]:
        name = oid.hex()
        for folder in self.folders:
            raw = read_file(folder / name[:2] / name[2:], MAX_OBJECT_BYTES + (MAX_OBJECT_BYTES >> 10) + 64)
            if raw is not None:
                z = zlib.decompressobj()
                data = z.decompress(raw, max(1, min(MAX_OBJECT_BYTES, self.bytes_left)) + 64)  # type, size, content
                header, _, body = data.partition(b"\0")
                kind, _, size = header.partition(b" ")
                if kind not in _TYPES or not z.eof or size != b"%d" % len(body):
                    raise Unknown("loose object")
                self._spend(len(body), 1)
                return _TYPES[kind], body
        return None

    def _packed(self, oid: bytes) -> Tuple[_Pack, int]:
        if self.packs is None:
            self.packs = []
            for folder in self.folders:
                try:
                    names = sorted(n for n in os.listdir(folder / "pack") if n.endswith(".idx"))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if len(names) + len(self.packs) > MAX_PACKS:
                    raise Unknown(f"more than {MAX_PACKS} packs")
                for name in names:
                    idx = folder / "pack" / name
                    self.packs.append(_Pack(self._open(idx), idx.with_suffix(".pack")))
        for pack in self.packs:
            offset = pack.offset(oid)
            if offset is not None:
                return pack, offset
        raise Unknown(f"object {oid.hex()} not found")

    def _entry(self, pack: _Pack, offset: int) -> Tuple[int, int, int, int, Optional[bytes]]:
        """(kind, size, where its data starts, its base's offset, its base's id) of a pack entry."""
        if pack.data < 0:  # first use: the pack must be the one its index describes
            fd = self._open(pack.path)
            size = os.fstat(fd).st_size
            head = os.pread(fd, 12, 0)
            version, count = struct.unpack(">II", head[4:]) if len(head) == 12 else (0, 0)
            if head[:4] != b"PACK" or version not in (2, 3) or count != pack.count:
                raise Unknown("pack header")
            if size < 32 or os.pread(fd, 20, size - 20) != pack.checksum:
                raise Unknown("pack truncated or not the one its index describes")
            pack.data, pack.size = fd, size
        if not 12 <= offset < pack.size - 20:
            raise Unknown("pack offset")
        head = os.pread(pack.data, 64, offset)  # past it, an IndexError: the header is unknown
        c, i = head[0], 1
        kind, size, shift = (c >> 4) & 7, c & 15, 4
        while c & 0x80:
            c, i, shift = head[i], i + 1, shift + 7
            size |= (c & 0x7F) << (shift - 7)
        if kind == 6:  # a delta of the entry `distance` bytes before this one
            c, i = head[i], i + 1
            distance = c & 0x7F
            while c & 0x80:
                c, i = head[i], i + 1
                distance = ((distance + 1) << 7) | (c & 0x7F)
            if not 12 <= offset - distance < offset:
                raise Unknown("pack delta base")
            return kind, size, offset + i, offset - distance, None
        if kind == 7:  # a delta of the object named
            if len(head) < i + 20:
                raise Unknown("pack entry cut")
            return kind, size, offset + i + 20, 0, head[i : i + 20]
        if kind not in _NAMES:
            raise Unknown(f"pack entry type {kind}")
        return kind, size, offset + i, 0, None

    def _inflate(self, pack: _Pack, pos: int, size: int) -> bytes:
        """The `size` bytes of the zlib stream at `pos`: never more inflated, nor more read than
        zlib can take to store them."""
        self._spend(size, 1)
        z, out = zlib.decompressobj(), bytearray()
        left = size + (size >> 10) + 64
        while not z.eof:
            chunk = os.pread(pack.data, min(left, 1 << 16), pos)
            if not chunk:
                raise Unknown("pack entry truncated")
            pos, left = pos + len(chunk), left - len(chunk)
            out += z.decompress(chunk, size + 1 - len(out))
            if len(out) > size:
                raise Unknown("pack entry larger than it says")
        if len(out) != size:
            raise Unknown("pack entry smaller than it says")
        return bytes(out)

    def _patch(self, base: bytes, delta: bytes) -> bytes:
        """A git delta applied to its base."""
        sizes, i = [], 0
        for _ in range(2):  # the base's size, the result's
            value = shift = 0
            while shift < 64:
                c, i = delta[i], i + 1
                value, shift = value | (c & 0x7F) << shift, shift + 7
                if not c & 0x80:
                    break
            sizes.append(value)
        if sizes[0] != len(base):
            raise Unknown("delta base size")
        self._spend(sizes[1], 0)
        out = bytearray()
        while i < len(delta):
            c, i = delta[i], i + 1
            if c & 0x80:  # copy a slice of the base
                start = length = 0
                for k in range(4):
                    if c >> k & 1:
                        start, i = start | delta[i] << 8 * k, i + 1
                for k in range(3):
                    if c >> (4 + k) & 1:
                        length, i = length | delta[i] << 8 * k, i + 1
                length = length or 0x10000
                if start + length > len(base) or len(out) + length > sizes[1]:
                    raise Unknown("delta copies past its base or its size")
                out += base[start : start + length]
            elif c and i + c <= len(delta) and len(out) + c <= sizes[1]:  # insert the next c bytes
                out += delta[i : i + c]
                i += c
            else:
                raise Unknown("delta instruction")
        if len(out) != sizes[1]:
            raise Unknown("delta result size")
        return bytes(out)


def _alternates(objects: Path) -> List[Path]:
    """An objects folder and those its `info/alternates` name, theirs followed (as git, 5 deep)."""
    folders, todo = [objects], [(objects, 0)]
    while todo:
        folder, depth = todo.pop(0)
        text = read_file(folder / "info" / "alternates", MAX_TEXT_BYTES) or b""
        for line in os.fsdecode(text).splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            if line.startswith('"') or depth >= 5 or len(folders) >= MAX_ALTERNATES:
                raise Unknown("alternates quoted, nested or many")
            path = Path(os.path.realpath(folder / line))
            if path not in folders:
                folders.append(path)
                todo.append((path, depth + 1))
    return folders
