"""The commit and dirty flag of the git repository holding a folder, read from `.git`: git never runs.

Git run in a config folder from a stranger would run what that repository's config names (an
fsmonitor, hooks, clean filters, an external diff, a pager). So the files git keeps are read
instead, each with a bounded read, and no program starts.

- The repository is found as git finds it: up from the folder's real path to a `.git` folder
  or `gitdir:` file (linked worktrees, submodules; `commondir` followed), within one
  filesystem. `commit` is HEAD, detached or a symbolic ref (a loose ref or `packed-refs`);
  when it names no commit (an unborn branch) or refs are kept otherwise (reftable), the answer
  is None, as when `git rev-parse HEAD` failed. The work tree is the folder holding `.git`, or
  the one `core.worktree` names if inside it (as a submodule's git folder does); none is read
  (`root`, `dirty` None) in a git folder or bare repository, for a core.worktree elsewhere (git
  would hash files there: an oracle on files outside), or if it is unknown (see below).
- `dirty`: whether `git status --porcelain --untracked-files=no` shows a change. A tracked file
  differs from the index, as git's refresh decides: file type, executable bit, size, stat
  times; a file whose stat differs, or written in the same second as the index, is hashed as
  git hashes it (a touched file is clean). Or the index differs from HEAD's tree (a change
  staged), read from git's object store by git_objects.py. Untracked files and changes inside
  submodules are not looked at; assume-unchanged and skip-worktree entries are skipped, as git
  skips them; an unmerged or intent-to-add entry is dirty; a missing index is an empty one.
- `dirty` is None (unknown), never a guess, for: a sha256 repository; a split or sparse index,
  or another index extension git requires; an index that does not parse or check; more than
  MAX_ENTRIES entries or MAX_HASH_BYTES to hash; a file to hash that a filter, `ident` or an
  encoding may change on its way into git (or, holding a CR byte, an end-of-line conversion);
  a setting used here set by a conditional include, or any once config files are past
  MAX_CONFIG_FILES or MAX_INCLUDE_DEPTH includes deep (reading stops: never a hang); an object to
  read that is missing, corrupt, past git_objects' bounds, or replaced (refs/replace). A change
  found for sure elsewhere still makes it True. Not followed: GIT_DIR and the like; `safe.directory`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
import struct
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from runner.record.git_objects import MAX_TEXT_BYTES, Unknown, read_file, staged

MAX_ENTRIES = 100_000  # index entries; more and `dirty` is None
MAX_HASH_BYTES = 256 << 20  # work-tree bytes to hash; more and `dirty` is None
MAX_INDEX_BYTES = 64 << 20
MAX_PACKED_REFS_BYTES = 64 << 20
MAX_CONFIG_FILES, MAX_INCLUDE_DEPTH = 64, 10  # more files, or deeper (git stops too): unknown
_HEX = re.compile(rb"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_REF = re.compile(r"refs(?:/(?!\.)[^/\x00-\x20\x7f~^:?*\[\\]+)+")
_PER_WORKTREE = ("HEAD", "refs/bisect/", "refs/worktree/", "refs/rewritten/")
_FALSE = ("false", "no", "off", "0", "")


@functools.lru_cache(maxsize=None)
def git_state(folder: Path) -> Optional[Dict[str, Any]]:
    """{"commit", "dirty", "root"} of the repository holding `folder`; None when it is not in
    one or its HEAD names no commit. Computed once per folder and process; never raises."""
    try:
        repo = _Repo.find(Path(folder))
        commit = repo.ref("HEAD") if repo else None
        root = repo.work_tree() if repo and commit else None
    except Exception:  # whatever is unreadable: as when `git rev-parse HEAD` failed
        return None
    if repo is None or commit is None:
        return None
    return {"commit": commit, "dirty": None if root is None else repo.dirty(root, commit), "root": root}


_ESCAPE = r"\\[\s\S]"
_CONFIG = re.compile(
    rf'\s*(?:[#;][^\n]*|\[\s*([\w.-]+)(?:\s+"((?:[^"\\\n]|{_ESCAPE})*)")?\s*\]'
    rf'|([A-Za-z][\w-]*)[ \t]*(?:=((?:[^"\\\n#;]|"(?:[^"\\\n]|{_ESCAPE})*"|{_ESCAPE})*))?)'
)
_UNESCAPE = {"n": "\n", "t": "\t", "b": "\b", "\\": "\\", '"': '"', "\n": ""}


def _parse_config(text: str) -> List[Tuple[str, str]]:
    """(`section[.subsection].key`, value) of a git config file, in order; a bare key is "true"."""
    out: List[Tuple[str, str]] = []
    section, i, end = "", 0, len(text.rstrip())
    while i < end:
        m = _CONFIG.match(text, i)
        if not m or m.end() == i:
            raise Unknown("config syntax")
        i = m.end()
        if m.group(1):
            sub = "" if m.group(2) is None else "." + re.sub(r"\\(.)", r"\1", m.group(2))
            section = m.group(1).lower() + sub
        elif m.group(3):
            value = "true" if m.group(4) is None else m.group(4).strip(" \t\r")
            value = re.sub(r'\\([\s\S])|"', lambda e: _UNESCAPE[e.group(1)] if e.group(1) else "", value)
            out.append((f"{section}.{m.group(3).lower()}", value))  # KeyError above: a bad escape
    return out


class _Config:
    """The settings git reads (system, global, the repository's), includes followed. Unknown: a key
    an `includeIf` sets (not evaluated); any once reading stopped at a bound (`partial`: so far)."""

    def __init__(self, files: List[Path]):
        self.values, self.conditional, self.files_read, self.incomplete = dict[str, str](), set[str](), 0, False
        for path in files:
            self.load(path, False, 0)

    def load(self, path: Path, conditional: bool, depth: int) -> None:
        if self.incomplete or self.files_read >= MAX_CONFIG_FILES or depth > MAX_INCLUDE_DEPTH:
            self.incomplete = True  # a file fanning out includes would have millions read
            return
        self.files_read += 1
        data = read_file(path, MAX_TEXT_BYTES) or b""
        for key, value in _parse_config(data.decode("utf-8", "surrogateescape")):
            (self.conditional.add if conditional else self.conditional.discard)(key)
            self.values[key] = value
            if key == "include.path" or key.startswith("includeif.") and key.endswith(".path"):
                self.load(path.parent / os.path.expanduser(value), conditional or key != "include.path", depth + 1)

    def get(self, key: str, default: str = "", partial: bool = False) -> str:
        if key in self.conditional or self.incomplete and not partial:
            raise Unknown(f"{key} set by a conditional include, or in a config file not read")
        return self.values.get(key, default)

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, str(default)).lower()
        return value not in _FALSE if value in _FALSE + ("true", "yes", "on") else int(value) != 0


class _Entry(NamedTuple):
    path: bytes
    oid: bytes
    mode: int
    skip: bool  # assume-unchanged or skip-worktree: git does not look at the file
    stat: Tuple[int, ...]  # ctime s, ns, mtime s, ns, inode, uid, gid, size (32 bits each)


def _stat_data(st: os.stat_result) -> Tuple[int, ...]:
    (cs, cns), (ms, mns) = divmod(st.st_ctime_ns, 10**9), divmod(st.st_mtime_ns, 10**9)
    return tuple(n & 0xFFFFFFFF for n in (cs, cns, ms, mns, st.st_ino, st.st_uid, st.st_gid, st.st_size))


def _parse_index(data: bytes) -> Optional[List[_Entry]]:
    """The entries of an index file (versions 2, 3, 4), checked against its trailing sha1;
    None when one is unmerged or intent-to-add (the work tree is dirty)."""
    if len(data) < 32 or data[:4] != b"DIRC":
        raise Unknown("not an index")
    version, count = struct.unpack_from(">II", data, 4)
    if version not in (2, 3, 4) or count > MAX_ENTRIES:
        raise Unknown(f"index version {version}, {count} entries")
    body = data[:-20]
    if data[-20:] != bytes(20) and hashlib.sha1(body).digest() != data[-20:]:  # zeros: index.skipHash
        raise Unknown("index checksum")
    entries: List[_Entry] = []
    pos, prev, dirty = 12, (b"", -1), False
    for _ in range(count):
        *fields, oid, flags = struct.unpack_from(">10I20sH", body, pos)
        start, pos, extended = pos, pos + 62, 0
        if flags & 0x4000:
            if version < 3:
                raise Unknown("extended flags in index version 2")
            (extended,), pos = struct.unpack_from(">H", body, pos), pos + 2
        if version == 4:  # the previous path less `strip` bytes, then this suffix
            c, pos = body[pos], pos + 1
            strip = c & 0x7F
            while c & 0x80:
                c, pos = body[pos], pos + 1
                strip = ((strip + 1) << 7) | (c & 0x7F)
            end = body.index(b"\0", pos)
            if strip > len(prev[0]):
                raise Unknown("index path prefix")
            path, pos = prev[0][: len(prev[0]) - strip] + body[pos:end], end + 1
        else:
            end = body.index(b"\0", pos)
            path, pos = body[pos:end], start + ((end - start + 8) & ~7)
        key, mode = (path, (flags >> 12) & 3), fields[6]
        if (flags & 0xFFF) != min(len(path), 0xFFF) or mode not in (0o100644, 0o100755, 0o120000, 0o160000):
            raise Unknown("index entry")
        if key <= prev or path.startswith(b"/") or any(p in (b"", b".", b"..", b".git") for p in path.split(b"/")):
            raise Unknown("index order or path")  # nothing git would write: it could lead outside
        dirty |= bool(key[1] or extended & 0x2000)  # unmerged, or intent-to-add
        stats = tuple(fields[i] for i in (0, 1, 2, 3, 5, 7, 8, 9))
        entries.append(_Entry(path, oid, mode, bool(flags & 0x8000 or extended & 0x4000), stats))
        prev = key
    while pos < len(body):  # extensions: the optional ones (upper-case first letter) skipped
        if not 65 <= body[pos] <= 90:
            raise Unknown(f"index extension {body[pos : pos + 4]!r}")  # a split or sparse index
        pos += 8 + struct.unpack_from(">I", body, pos + 4)[0]
    if pos != len(body):
        raise Unknown("index extensions")
    return None if dirty else entries


class _Repo:
    """A repository found from a folder: its git folder, common git folder and settings."""

    def __init__(self, gitdir: Path, common: Path, found_tree: Optional[Path]):
        self.gitdir, self.common, self.found_tree = gitdir, common, found_tree
        env = os.environ
        self.xdg = xdg = Path(env.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "git")
        system = [] if env.get("GIT_CONFIG_NOSYSTEM") else [env.get("GIT_CONFIG_SYSTEM") or "/etc/gitconfig"]
        user = [env["GIT_CONFIG_GLOBAL"]] if "GIT_CONFIG_GLOBAL" in env else [str(xdg / "config"), "~/.gitconfig"]
        files = [Path(os.path.expanduser(f)) for f in system + user if f != os.devnull]
        self.config = _Config(files + [common / "config"])
        if not self.config.incomplete and self.config.flag("extensions.worktreeconfig", False):
            self.config.load(gitdir / "config.worktree", False, 0)
        refs = self.config.get("extensions.refstorage", "files", partial=True).lower()  # HEAD still read
        if self.config.get("core.repositoryformatversion", "0", partial=True) not in ("0", "1") or refs != "files":
            raise Unknown("a repository format git refuses, or refs not kept in files (reftable)")
        self.attributes: Dict[Path, Tuple[bool, bool]] = {}

    @classmethod
    def find(cls, folder: Path) -> Optional[_Repo]:
        here = Path(os.path.realpath(folder))
        device = os.stat(here).st_dev if here.is_dir() else None
        while device is not None:
            dotgit = here / ".git"
            if dotgit.is_file():  # "gitdir: PATH": a linked worktree or a submodule
                text = (read_file(dotgit, MAX_TEXT_BYTES) or b"").decode("utf-8", "surrogateescape")
                gitdir = Path(os.path.realpath(here / text[8:].strip()))
                common = _common_dir(gitdir) if text.startswith("gitdir: ") else None
                if common is None:
                    raise Unknown("a .git file naming no repository")  # git stops there too
                return cls(gitdir, common, here)
            if dotgit.is_dir() and (common := _common_dir(dotgit)):
                return cls(dotgit, common, here)
            if common := _common_dir(here):  # a bare repository, or inside a git folder
                return cls(here, common, None)
            if here.parent == here or os.stat(here.parent).st_dev != device:
                return None
            here = here.parent
        return None

    def ref(self, name: str, depth: int = 0) -> Optional[str]:
        """The object id a ref names, symbolic refs followed; None when it names none."""
        data = read_file((self.gitdir if name.startswith(_PER_WORKTREE) else self.common) / name, MAX_TEXT_BYTES)
        if data is None and name != "HEAD":
            packed = read_file(self.common / "packed-refs", MAX_PACKED_REFS_BYTES) or b""
            m = re.search(rb"^(%s) %s$" % (_HEX.pattern, re.escape(name.encode())), packed, re.M)
            return m.group(1).decode() if m else None
        if data and data.startswith(b"ref:"):
            target = data[4:].strip().decode("ascii")
            if depth >= 5 or not _REF.fullmatch(target) or ".." in target or target.endswith(".lock"):
                raise Unknown("symbolic ref")
            return self.ref(target, depth + 1)
        oid = (data or b"").split()[:1]
        if not oid or not _HEX.fullmatch(oid[0]):
            raise Unknown("ref")
        return oid[0].decode()

    def work_tree(self) -> Optional[str]:
        """The work tree to read, if any (see the module's docstring)."""
        try:
            if self.found_tree is None or self.config.flag("core.bare", False):
                return None
            configured = self.config.get("core.worktree")
        except Unknown:  # set by a conditional include, or config not read
            return None
        root = Path(os.path.realpath(self.gitdir / configured)) if configured else self.found_tree
        return str(root) if root == self.found_tree or self.found_tree in root.parents else None

    def dirty(self, root: str, commit: str) -> Optional[bool]:
        """True or False, or None when not known for sure (see the module's docstring)."""
        self.root, index = os.fsencode(root), self.gitdir / "index"
        try:
            if len(commit) != 40 or self.config.get("extensions.objectformat", "sha1").lower() != "sha1":
                raise Unknown("not a sha1 repository")
            index_time = os.stat(index).st_mtime_ns // 10**9 if index.exists() else 0
            data = read_file(index, MAX_INDEX_BYTES)
            entries = [] if data is None else _parse_index(data)  # no index: git's is empty
            if entries is None:
                return True
        except Exception:  # whatever cannot be read is unknown: never an exception
            return None
        answers = []
        for check in (lambda: self._changed(entries, index_time), lambda: self._staged(commit, entries)):
            try:
                answers.append(check())
            except Exception:
                answers.append(None)
            if answers[-1]:
                return True  # a change found for sure, whatever the other check could not tell
        return None if None in answers else False

    def _staged(self, commit: str, entries: List[_Entry]) -> bool:
        """Whether the index differs from HEAD's tree (a change staged)."""
        replace = self.common / "refs" / "replace"  # git reads a replaced object in its place
        packed = read_file(self.common / "packed-refs", MAX_PACKED_REFS_BYTES) or b""
        if self.config.flag("core.usereplacerefs", True) and (b" refs/replace/" in packed or any(replace.glob("*"))):
            raise Unknown("replace refs")
        return staged(self.common / "objects", bytes.fromhex(commit), [(e.path, e.mode, e.oid) for e in entries])

    def _changed(self, entries: List[_Entry], index_time: int) -> Optional[bool]:
        """Whether a tracked file differs from its index entry (as git's refresh decides)."""
        filemode, symlinks = self.config.flag("core.filemode", True), self.config.flag("core.symlinks", True)
        self.hidden_attributes = any(e.skip and e.path.rpartition(b"/")[2] == b".gitattributes" for e in entries)
        folders: Dict[bytes, bool] = {b"": True}
        to_hash: List[Tuple[_Entry, bytes, os.stat_result]] = []
        budget = MAX_HASH_BYTES
        for e in entries:
            if e.skip or e.mode == 0o160000:  # as git: not looked at; submodules skipped
                continue
            if not self._real_folder(e.path.rpartition(b"/")[0], folders):
                return True  # a folder on its way is gone, or a symlink: git sees the file gone
            path = self.root + b"/" + e.path
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return True
            if e.mode != 0o120000:
                if not stat.S_ISREG(st.st_mode) or (filemode and (e.mode ^ st.st_mode) & 0o100):
                    return True
            elif not stat.S_ISLNK(st.st_mode) and (symlinks or not stat.S_ISREG(st.st_mode)):
                return True
            if e.stat[7] and e.stat[7] != st.st_size & 0xFFFFFFFF:  # size 0: git's mark to look again
                return True
            if e.stat == _stat_data(st) and e.stat[2] < index_time:  # else racily clean: look
                continue
            budget -= st.st_size
            if budget >= 0:
                to_hash.append((e, path, st))
        unknown = budget < 0  # files past it not hashed
        for e, path, st in to_hash:
            same = self._same(e, path, st)
            if same is False:
                return True
            unknown |= same is None
        return None if unknown else False

    def _real_folder(self, folder: bytes, known: Dict[bytes, bool]) -> bool:
        """Whether `folder` in the work tree is a folder reached through no symlink."""
        if folder not in known:
            try:
                real = stat.S_ISDIR(os.lstat(self.root + b"/" + folder).st_mode)
            except (FileNotFoundError, NotADirectoryError):
                real = False
            known[folder] = real and self._real_folder(folder.rpartition(b"/")[0], known)
        return known[folder]

    def _same(self, e: _Entry, path: bytes, st: os.stat_result) -> Optional[bool]:
        """Whether the file holds the blob the entry names, hashed as git does; None if unsure."""
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            return hashlib.sha1(b"blob %d\0" % len(target) + target).digest() == e.oid
        anything, cr = self._conversions(e.path) if e.mode != 0o120000 else (False, False)
        if anything:
            return None
        digest = hashlib.sha1(b"blob %d\0" % st.st_size)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            now, left = os.fstat(fd), st.st_size
            if not stat.S_ISREG(now.st_mode) or now.st_size != left:
                return None  # changed under us
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 20))
                if not chunk or (cr and b"\r" in chunk):
                    return None
                digest.update(chunk)
                left -= len(chunk)
            return None if os.read(fd, 1) else digest.digest() == e.oid
        finally:
            os.close(fd)

    def _conversions(self, path: bytes) -> Tuple[bool, bool]:
        """Whether git may change this file on its way in: (by a filter, `ident` or an encoding;
        by an end-of-line conversion, which changes only a file holding a CR byte)."""
        parts = path.split(b"/")[:-1]
        configured = self.config.get("core.attributesfile")
        own = Path(os.path.expanduser(configured)) if configured else self.xdg / "attributes"
        files = [Path("/etc/gitattributes"), own, self.common / "info" / "attributes"]
        folders = [b"/".join([self.root, *parts[:k]]) for k in range(len(parts) + 1)]
        files += [Path(os.fsdecode(f), ".gitattributes") for f in folders]
        flags = [self._attributes(f) for f in files]
        autocrlf = self.config.get("core.autocrlf", "false").lower() not in _FALSE
        return self.hidden_attributes or any(a for a, _ in flags), autocrlf or any(c for _, c in flags)

    def _attributes(self, path: Path) -> Tuple[bool, bool]:
        if path not in self.attributes:
            anything = cr = False
            for line in (read_file(path, MAX_TEXT_BYTES) or b"").splitlines():
                words = line.split()
                if words and not words[0].startswith(b"#"):
                    names = {w.split(b"=")[0] for w in words[1:] if w[:1] not in (b"-", b"!")}
                    anything |= bool(names & {b"filter", b"ident", b"working-tree-encoding"})
                    cr |= bool(names & {b"text", b"eol", b"crlf"})
            self.attributes[path] = (anything, cr)
        return self.attributes[path]


def _common_dir(path: Path) -> Optional[Path]:
    """The common git folder if `path` is a git folder (as git's is_git_directory), else None."""
    try:
        head = read_file(path / "HEAD", MAX_TEXT_BYTES) or b""
        if not (head.startswith(b"ref:") and head[4:].lstrip().startswith(b"refs/") or _HEX.match(head)):
            return None
        link = read_file(path / "commondir", MAX_TEXT_BYTES)
    except (OSError, Unknown):
        return None
    common = path if link is None else Path(os.path.realpath(path / os.fsdecode(link.rstrip())))
    return common if (common / "objects").is_dir() and (common / "refs").is_dir() else None
