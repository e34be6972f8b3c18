"""Git state read from `.git` itself: git never runs, so a hostile repository runs nothing.

Each repository is built with the real git command line in a safe environment (no system or
user config), its commit taken from `git rev-parse HEAD`; then it is changed (or made
hostile) and read. Where the table expects True or False, real `git status` is asked
afterwards (it may rewrite the index, so it goes last) and must agree, unless the row says
where and why the two differ.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.record import git_objects as go
from runner.record import git_state as gs
from runner.record import runlog
from tests.helpers import ROOT, cli, command_env

read = gs.git_state.__wrapped__  # uncached: every call reads the repository again


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A HOME without git config, for git and for the reader alike."""
    home = tmp_path / "home"
    home.mkdir()
    for key, value in {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_NOSYSTEM": "1"}.items():
        monkeypatch.setenv(key, value)
    return home


def git(repo: Path, *args: str, check: bool = True) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ["HOME"],
        "GIT_CONFIG_NOSYSTEM": "1",
        "LC_ALL": "C",
        **{f"GIT_{who}_{what}": "t" for who in ("AUTHOR", "COMMITTER") for what in ("NAME", "EMAIL")},
    }
    proc = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-C", str(repo), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 or not check, proc.stderr
    return proc.stdout.strip()


def make_repo(path: Path) -> Path:
    """A repository of a file, a file in a folder, an executable and a symlink, committed."""
    (path / "sub").mkdir(parents=True)
    (path / "a.txt").write_text("alpha\n")
    (path / "sub" / "b.txt").write_text("beta\n")
    (path / "run.sh").write_text("#!/bin/sh\n")
    (path / "run.sh").chmod(0o755)
    (path / "link").symlink_to("a.txt")
    git(path, "init", "-q")
    git(path, "add", ".")
    git(path, "commit", "-qm", "one")
    return path


@pytest.fixture
def repo(tmp_path, home):
    return make_repo(tmp_path / "repo")


def later(path: Path) -> None:
    """Touch a file's times a minute on: git must look again, its content is the same."""
    st = path.lstat()
    os.utime(path, ns=(st.st_atime_ns + 60 * 10**9, st.st_mtime_ns + 60 * 10**9), follow_symlinks=False)


def second_commit(r: Path) -> None:
    (r / "a.txt").write_text("alpha two\n")
    git(r, "commit", "-qam", "two")


def conflict(r: Path) -> None:
    git(r, "checkout", "-qb", "other")
    (r / "a.txt").write_text("other\n")
    git(r, "commit", "-qam", "other")
    git(r, "checkout", "-q", "main")
    (r / "a.txt").write_text("main\n")
    git(r, "commit", "-qam", "main")
    git(r, "merge", "other", check=False)


def submodule(r: Path) -> None:
    make_repo(r / "inner")
    git(r, "add", "inner")
    git(r, "commit", "-qm", "inner")
    (r / "inner" / "a.txt").write_text("changed inside the submodule\n")


def deep_files(r: Path) -> None:
    """Paths sharing long prefixes, which index version 4 compresses."""
    for name in ("deep/er/aaa.txt", "deep/er/aab.txt", "deep/er-x.txt", "deep/er0.txt", "deep/erz/c.txt"):
        (r / name).parent.mkdir(parents=True, exist_ok=True)
        (r / name).write_text(name)
    git(r, "add", ".")
    git(r, "commit", "-qm", "deep")


def fifo_for(path: Path) -> None:
    path.unlink()
    os.mkfifo(path)


def patch_index(r: Path, old: bytes, new: bytes) -> None:
    """Replace bytes in the index and make its trailing checksum right again."""
    import hashlib

    body = (r / ".git" / "index").read_bytes()[:-20].replace(old, new)
    (r / ".git" / "index").write_bytes(body + hashlib.sha1(body).digest())


def include(r: Path, key: str) -> None:
    """The repository's config includes a file turning core.filemode off."""
    (r / ".git" / "more.inc").write_text("[core]\n\tfilemode = false\n")
    git(r, "config", key, "more.inc")
    (r / "a.txt").chmod(0o755)


def w(name: str, text: str):
    def write(r: Path) -> None:
        (r / name).parent.mkdir(parents=True, exist_ok=True)
        (r / name).write_text(text)

    return write


def steps(*fns):
    def run(r: Path) -> None:
        for fn in fns:
            fn(r)

    return run


def g(*args: str):
    return lambda r: git(r, *args)


STATES = [
    # (id, what is done to a fresh repository, dirty, git status agrees)
    ("clean", steps(), False, True),
    ("modified, same size", w("a.txt", "alphA\n"), True, True),
    ("modified, other size", w("a.txt", "alpha and more\n"), True, True),
    ("modified in a folder", w("sub/b.txt", "BETA\n"), True, True),
    ("touched, unchanged", lambda r: later(r / "a.txt"), False, True),
    ("rewritten with the same bytes", w("a.txt", "alpha\n"), False, True),
    ("symlink touched", lambda r: later(r / "link"), False, True),
    ("deleted", lambda r: (r / "a.txt").unlink(), True, True),
    ("untracked file", w("new.txt", "new\n"), False, True),
    # staged: the index differs from HEAD's tree (git status shows "M ", "A ", "D ")
    ("staged change", steps(w("a.txt", "staged\n"), g("add", "a.txt")), True, True),
    ("staged change in a folder", steps(w("sub/b.txt", "staged\n"), g("add", "sub")), True, True),
    ("staged new file", steps(w("new.txt", "new\n"), g("add", "new.txt")), True, True),
    ("staged new folder", steps(w("sub/new/c.txt", "new\n"), g("add", "sub")), True, True),
    ("staged removal", g("rm", "-q", "--cached", "a.txt"), True, True),
    ("staged removal of a folder", g("rm", "-rq", "--cached", "sub"), True, True),
    ("staged executable bit", steps(lambda r: (r / "a.txt").chmod(0o755), g("add", "a.txt")), True, True),
    (
        "staged symlink retarget",
        steps(lambda r: ((r / "link").unlink(), (r / "link").symlink_to("x")), g("add", "link")),
        True,
        True,
    ),
    (
        "staged then reverted in the index",
        steps(w("a.txt", "x\n"), g("add", "a.txt"), w("a.txt", "alpha\n"), g("add", "a.txt")),
        False,
        True,
    ),
    ("staged removal, added back", steps(g("rm", "-q", "--cached", "a.txt"), g("add", "a.txt")), False, True),
    ("gc, clean", steps(second_commit, g("gc", "-q")), False, True),
    ("gc, staged change", steps(second_commit, g("gc", "-q"), w("sub/b.txt", "s\n"), g("add", "sub")), True, True),
    (
        "gc, staged then reverted",
        steps(
            second_commit,
            g("gc", "-q"),
            w("a.txt", "s\n"),
            g("add", "a.txt"),
            w("a.txt", "alpha two\n"),
            g("add", "a.txt"),
        ),
        False,
        True,
    ),
    ("gc, staged removal", steps(g("gc", "-q"), g("rm", "-q", "--cached", "sub/b.txt")), True, True),
    ("staged, then put back", steps(w("a.txt", "x\n"), g("add", "a.txt"), w("a.txt", "alpha\n")), True, True),
    ("staged then unstaged", steps(w("a.txt", "x\n"), g("add", "a.txt"), g("reset", "-q")), True, True),
    ("executable bit set", lambda r: (r / "a.txt").chmod(0o755), True, True),
    (
        "executable bit, filemode off",
        steps(g("config", "core.filemode", "false"), lambda r: (r / "a.txt").chmod(0o755)),
        False,
        True,
    ),
    ("symlink retargeted", lambda r: ((r / "link").unlink(), (r / "link").symlink_to("run.sh")), True, True),
    ("file replaced by a folder", lambda r: ((r / "a.txt").unlink(), (r / "a.txt").mkdir()), True, True),
    ("file replaced by a symlink", lambda r: ((r / "a.txt").unlink(), (r / "a.txt").symlink_to("run.sh")), True, True),
    (
        "folder replaced by a symlink",
        lambda r: ((r / "sub").rename(r / "sub2"), (r / "sub").symlink_to("sub2")),
        True,
        True,
    ),
    ("tracked file made a FIFO", lambda r: fifo_for(r / "a.txt"), True, True),
    (
        "assume-unchanged, modified",
        steps(g("update-index", "--assume-unchanged", "a.txt"), w("a.txt", "x\n")),
        False,
        True,
    ),
    (
        "skip-worktree, deleted",
        steps(g("update-index", "--skip-worktree", "a.txt"), lambda r: (r / "a.txt").unlink()),
        False,
        True,
    ),
    ("intent to add", steps(w("new.txt", "new\n"), g("add", "-N", "new.txt")), True, True),
    ("merge conflict", conflict, True, True),
    ("second commit, clean", second_commit, False, True),
    ("detached HEAD", steps(second_commit, g("checkout", "-q", "--detach", "HEAD~1")), False, True),
    (
        "detached HEAD, modified",
        steps(second_commit, g("checkout", "-q", "--detach", "HEAD~1"), w("a.txt", "x\n")),
        True,
        True,
    ),
    ("packed refs", steps(second_commit, g("pack-refs", "--all")), False, True),
    ("packed objects, clean", steps(second_commit, g("repack", "-qad"), g("prune-packed")), False, True),
    ("packed objects, modified", steps(g("repack", "-qad"), g("prune-packed"), w("a.txt", "s\n")), True, True),
    ("index v4, clean", steps(deep_files, g("update-index", "--index-version", "4")), False, True),
    (
        "index v4, modified",
        steps(deep_files, g("update-index", "--index-version", "4"), w("deep/er0.txt", "x")),
        True,
        True,
    ),
    (
        "index v4, touched",
        steps(deep_files, g("update-index", "--index-version", "4"), lambda r: later(r / "deep/er-x.txt")),
        False,
        True,
    ),
    ("index v3", steps(deep_files, g("update-index", "--index-version", "3")), False, True),
    (
        "index trailer zeroed (index.skipHash)",
        lambda r: (r / ".git" / "index").write_bytes((r / ".git" / "index").read_bytes()[:-20] + bytes(20)),
        False,
        None,
    ),
    (
        "text=auto, LF file touched",
        steps(w(".gitattributes", "* text=auto\n"), lambda r: later(r / "a.txt")),
        False,
        True,
    ),
    # a submodule's own changes are not looked at (git status would show " M inner")
    ("submodule changed inside", submodule, False, False),
    # unknown: a file git would pass through a program (or convert) before hashing
    (
        "filter attribute, touched",
        steps(w(".gitattributes", "*.txt filter=x\n"), lambda r: later(r / "a.txt")),
        None,
        None,
    ),
    (
        "autocrlf, CRLF file touched",
        steps(
            w("c.txt", "a\r\n"),
            g("config", "core.autocrlf", "true"),
            g("add", "c.txt"),
            g("commit", "-qm", "c"),
            lambda r: later(r / "c.txt"),
        ),
        None,
        None,
    ),
    ("index extension git requires (split index)", g("update-index", "--split-index"), None, None),
    ("sparse index", g("sparse-checkout", "set", "--cone", "--sparse-index", "sub"), None, None),
    (
        "index corrupted",
        lambda r: (r / ".git" / "index").write_bytes((r / ".git" / "index").read_bytes()[:-1] + b"\0"),
        None,
        None,
    ),
    (
        "index truncated",
        lambda r: (r / ".git" / "index").write_bytes((r / ".git" / "index").read_bytes()[:40]),
        None,
        None,
    ),
    ("index a FIFO", lambda r: fifo_for(r / ".git" / "index"), None, None),
    (
        "index deleted (git: an empty index, all staged for removal)",
        lambda r: (r / ".git" / "index").unlink(),
        True,
        True,
    ),
    ("replace ref (git reads another commit's tree)", steps(second_commit, g("replace", "HEAD", "HEAD~1")), None, None),
    ("index path leading out", lambda r: patch_index(r, b"a.txt\0", b"../ab\0"), None, None),
    ("include turns filemode off", lambda r: include(r, "include.path"), False, True),
    # a conditional include is not evaluated: what it sets is unknown (git: this one does not apply)
    ("includeIf turns filemode off", lambda r: include(r, "includeIf.gitdir:/nowhere/.path"), None, None),
    # ... yet a change found for sure elsewhere still counts
    (
        "unknown index entry, deleted file",
        steps(w(".gitattributes", "*.txt filter=x\n"), lambda r: later(r / "a.txt"), lambda r: (r / "run.sh").unlink()),
        True,
        True,
    ),
]


@pytest.mark.parametrize("action, dirty, git_agrees", [s[1:] for s in STATES], ids=[s[0] for s in STATES])
def test_dirty_as_git_status_says(repo, action, dirty, git_agrees):
    action(repo)
    commit = git(repo, "rev-parse", "HEAD")
    assert read(repo) == {"commit": commit, "dirty": dirty, "root": str(repo)}
    assert read(repo / "sub") == read(repo)
    if git_agrees is not None:
        changed = bool(git(repo, "status", "--porcelain", "--untracked-files=no", check=False))
        assert changed == dirty if git_agrees else changed != dirty


def settle(r: Path) -> None:
    """Files older than the index (so none is racily clean), the index refreshed."""
    for f in ("a.txt", "sub/b.txt", "run.sh", "link"):
        st = (r / f).lstat()
        os.utime(r / f, ns=(st.st_atime_ns - 10**10, st.st_mtime_ns - 10**10), follow_symlinks=False)
    git(r, "update-index", "--refresh")


def test_more_entries_or_bytes_than_the_bounds_are_unknown(repo, monkeypatch):
    settle(repo)
    later(repo / "a.txt")
    assert read(repo)["dirty"] is False
    monkeypatch.setattr(gs, "MAX_HASH_BYTES", 3)  # a.txt (6 bytes) would have to be hashed
    assert read(repo)["dirty"] is None
    monkeypatch.setattr(gs, "MAX_HASH_BYTES", 6)
    assert read(repo)["dirty"] is False
    monkeypatch.setattr(gs, "MAX_ENTRIES", 3)  # four entries
    assert read(repo)["dirty"] is None


# ---------------------------------------------------------------- staged: git's object store


def status_says(r: Path) -> bool:
    return bool(git(r, "status", "--porcelain", "--untracked-files=no"))


def packed(r: Path) -> Path:
    """Every object in one pack, none loose: the pack's path."""
    git(r, "repack", "-qad")
    git(r, "prune-packed")
    assert not any(p.name != "pack" and p.name != "info" for p in (r / ".git" / "objects").iterdir())
    (pack,) = (r / ".git" / "objects" / "pack").glob("*.pack")
    return pack


def pack_rows(pack: Path) -> dict:
    """Object id -> (type, size, size in the pack, offset[, depth, base]) from git verify-pack."""
    rows = git(pack.parent, "verify-pack", "-v", str(pack.with_suffix(".idx"))).splitlines()
    return {row.split()[0]: row.split()[1:] for row in rows if len(row.split()) >= 5 and len(row.split()[0]) == 40}


def rewrite(path: Path, data: bytes) -> None:
    path.chmod(0o644)  # git writes objects and packs read-only
    path.write_bytes(data)


def test_the_index_trees_hash_as_git_write_tree_hashes_them(repo):
    deep_files(repo)
    for name in ("a-b", "a/b", "a0", "a.b/c"):  # names that sort differently as files and folders
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(name)
    git(repo, "add", ".")
    entries = gs._parse_index((repo / ".git" / "index").read_bytes())
    trees = go._index_trees((e.path, e.mode, e.oid) for e in entries)
    assert trees[b""][0].hex() == git(repo, "write-tree")
    for folder in ("deep", "deep/er", "a", "sub"):
        assert trees[folder.encode()][0].hex() == git(repo, "write-tree", f"--prefix={folder}/")


def test_a_deltified_commit_is_read_from_its_pack(repo, monkeypatch):
    """HEAD at an older commit stored as a delta of a newer one (offset, then reference deltas)."""
    for i in range(12):
        (repo / "a.txt").write_text(f"{i}\n")
        git(repo, "commit", "-qam", f"commit {i}\n\n" + "the same long message body. " * 80 + str(i))
    git(repo, "checkout", "-q", "--detach", "HEAD~6")
    commit = git(repo, "rev-parse", "HEAD")
    for offsets in ("true", "false"):
        git(repo, "-c", f"repack.useDeltaBaseOffset={offsets}", "repack", "-qadf", "--window=50", "--depth=50")
        git(repo, "prune-packed")
        (pack,) = (repo / ".git" / "objects" / "pack").glob("*.pack")
        assert len(pack_rows(pack)[commit]) == 6  # a delta: its depth and base are listed
        assert read(repo) == {"commit": commit, "dirty": False, "root": str(repo)}
        (repo / "a.txt").write_text("staged\n")
        git(repo, "add", "a.txt")
        assert read(repo)["dirty"] is True
        git(repo, "reset", "-q", "--hard")
        with monkeypatch.context() as m:
            m.setattr(go, "MAX_DELTA_CHAIN", 0)  # the commit is a delta: one is too many
            assert read(repo)["dirty"] is None


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    rewrite(path, bytes(data))


def damage_index(pack: Path, at: int) -> None:
    flip(pack.with_suffix(".idx"), at)


PACK_DAMAGE = {  # (pack, its rows, HEAD's commit, HEAD's tree) -> None
    "truncated": lambda pack, rows, head, tree: rewrite(pack, pack.read_bytes()[:-30]),
    "cut after HEAD's commit": lambda pack, rows, head, tree: rewrite(
        pack, pack.read_bytes()[: int(rows[head][3]) + 4]
    ),
    "HEAD's commit corrupt": lambda pack, rows, head, tree: flip(pack, int(rows[head][3]) + int(rows[head][2]) - 3),
    "HEAD's tree corrupt": lambda pack, rows, head, tree: flip(pack, int(rows[tree][3]) + 4),
    "object count in the header": lambda pack, rows, head, tree: flip(pack, 11),
    "pack index truncated": lambda pack, rows, head, tree: rewrite(
        pack.with_suffix(".idx"), pack.with_suffix(".idx").read_bytes()[:-30]
    ),
    "pack index, HEAD's offset": lambda pack, rows, head, tree: damage_index(
        pack, 1032 + 24 * len(rows) + 4 * sorted(rows).index(head) + 3
    ),
    "pack index, HEAD's id": lambda pack, rows, head, tree: damage_index(pack, 1032 + 20 * sorted(rows).index(head)),
    "pack gone": lambda pack, rows, head, tree: pack.unlink(),
}


@pytest.mark.parametrize("damage", list(PACK_DAMAGE.values()), ids=list(PACK_DAMAGE))
def test_a_corrupt_or_truncated_pack_is_unknown_and_never_raises(repo, damage):
    second_commit(repo)
    pack = packed(repo)
    head, tree = git(repo, "rev-parse", "HEAD"), git(repo, "rev-parse", "HEAD^{tree}")
    assert read(repo)["dirty"] is False  # HEAD's commit read: its tree is the index's
    w("sub/b.txt", "staged\n")(repo)
    git(repo, "add", "sub")
    assert read(repo)["dirty"] is True  # HEAD's trees of / and sub read too
    damage(pack, pack_rows(pack), head, tree)
    assert read(repo) == {"commit": head, "dirty": None, "root": str(repo)}
    (repo / "a.txt").write_text("a change in the work tree is found all the same\n")
    assert read(repo)["dirty"] is True


def test_a_missing_or_corrupt_loose_object_is_unknown(repo):
    second_commit(repo)
    head, tree, first = (git(repo, "rev-parse", name) for name in ("HEAD", "HEAD^{tree}", "HEAD~1"))
    loose = repo / ".git" / "objects" / head[:2] / head[2:]
    data = loose.read_bytes()
    rewrite(loose, data[:-2] + bytes([data[-2] ^ 1, data[-1]]))  # zlib's checksum no longer holds
    assert read(repo)["dirty"] is None
    os.mkfifo(repo / "fifo")  # an object that is a FIFO is never opened
    loose.unlink()
    os.rename(repo / "fifo", loose)
    assert read(repo)["dirty"] is None
    loose.unlink()
    assert read(repo)["dirty"] is None  # missing
    for other in (tree, first):  # a tree, then the first commit, under HEAD's name
        shutil.copy(repo / ".git" / "objects" / other[:2] / other[2:], loose)
        assert read(repo)["dirty"] is None  # not the first commit's tree against the index
        loose.unlink()


def test_the_object_store_bounds_make_it_unknown(repo, monkeypatch):
    w("sub/deeper/c.txt", "c\n")(repo)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "deeper")
    w("sub/deeper/c.txt", "staged\n")(repo)
    git(repo, "add", ".")
    assert read(repo)["dirty"] is True  # read: the commit and the trees of /, sub, sub/deeper
    for name, value in (("MAX_OBJECTS", 3), ("MAX_BYTES", 300), ("MAX_OBJECT_BYTES", 100)):
        with monkeypatch.context() as m:
            m.setattr(go, name, value)
            assert read(repo)["dirty"] is None, name
    git(repo, "reset", "-q", "--hard", "HEAD")
    with monkeypatch.context() as m:
        m.setattr(go, "MAX_OBJECTS", 0)  # a clean repository: its commit is read all the same
        assert read(repo)["dirty"] is None


def test_objects_of_a_shared_clone_are_read_through_its_alternates(repo, tmp_path):
    git(tmp_path, "clone", "-q", "--shared", str(repo), "clone")
    clone = tmp_path / "clone"
    assert (clone / ".git" / "objects" / "info" / "alternates").is_file()
    assert read(clone)["dirty"] is False
    (clone / "sub" / "b.txt").write_text("staged\n")
    git(clone, "add", "sub")
    assert read(clone)["dirty"] is True == status_says(clone)
    (repo / ".git" / "objects" / "info" / "alternates").write_text(str(clone / ".git" / "objects") + "\n")
    assert read(clone)["dirty"] is True  # alternates in a loop are read once


def test_a_tree_git_reads_loosely_compares_as_git_compares_it(repo):
    """HEAD's tree holding an empty folder and a group-writable file mode (100664), as old or
    hand-made trees may: its id differs from the index's, yet git status sees no change."""
    entries = git(repo, "ls-tree", "HEAD").replace("100644 blob", "100664 blob").splitlines()
    empty = git(repo, "hash-object", "-t", "tree", "-w", "--stdin")
    lines = [*entries, f"040000 tree {empty}\tempty"]
    body = b"".join(
        b"%s %s\0%s" % (m.encode(), name.encode(), bytes.fromhex(oid))
        for m, _, rest in (line.partition(" ") for line in lines)
        for _, oid, name in [(rest.split()[0], rest.split("\t")[0].split()[1], rest.split("\t")[1])]
    )
    tree = (
        subprocess.run(
            ["git", "-C", str(repo), "hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
            input=body,
            capture_output=True,
            check=True,
            timeout=60,
        )
        .stdout.decode()
        .strip()
    )
    commit = git(repo, "commit-tree", tree, "-m", "loose tree")
    git(repo, "update-ref", "HEAD", commit)
    assert tree != git(repo, "write-tree")
    assert read(repo) == {"commit": commit, "dirty": False, "root": str(repo)}
    assert status_says(repo) is False
    git(repo, "rm", "-q", "--cached", "run.sh")
    assert read(repo)["dirty"] is True == status_says(repo)


def test_not_a_repository_and_unborn_branch_are_none(tmp_path, home):
    assert read(tmp_path) is None
    assert read(tmp_path / "missing") is None
    git(tmp_path, "init", "-q")
    assert read(tmp_path) is None  # no commit yet: as when `git rev-parse HEAD` failed
    assert runlog.git_state is gs.git_state  # the old name still answers


def test_inside_the_git_folder_and_a_bare_clone_have_no_work_tree(repo, tmp_path):
    commit = git(repo, "rev-parse", "HEAD")
    assert read(repo / ".git" / "refs") == {"commit": commit, "dirty": None, "root": None}
    git(tmp_path, "clone", "-q", "--bare", str(repo), "bare.git")
    assert read(tmp_path / "bare.git") == {"commit": commit, "dirty": None, "root": None}


def test_a_linked_worktree_has_its_own_head_index_and_root(repo, tmp_path):
    git(repo, "worktree", "add", "-q", "-b", "side", str(tmp_path / "side"))
    side = tmp_path / "side"
    (side / "a.txt").write_text("on the side\n")
    git(side, "commit", "-qam", "side")
    commit = git(side, "rev-parse", "HEAD")
    assert read(side / "sub") == {"commit": commit, "dirty": False, "root": str(side)}
    assert read(repo)["commit"] == git(repo, "rev-parse", "HEAD") != commit
    (side / "sub" / "b.txt").write_text("x\n")
    assert read(side)["dirty"] is True and read(repo)["dirty"] is False
    git(side, "pack-refs", "--all")
    assert read(side)["commit"] == commit


def test_a_sha256_repository_gives_its_commit_and_an_unknown_dirty_flag(tmp_path, home):
    r = tmp_path / "r"
    r.mkdir()
    git(r, "init", "-q", "--object-format=sha256")
    (r / "a.txt").write_text("a\n")
    git(r, "add", ".")
    git(r, "commit", "-qm", "one")
    commit = git(r, "rev-parse", "HEAD")
    assert len(commit) == 64
    assert read(r) == {"commit": commit, "dirty": None, "root": str(r)}


def test_unreadable_refs_give_none_and_never_hang(repo):
    git(repo, "pack-refs", "--all")
    assert read(repo)["commit"] == git(repo, "rev-parse", "HEAD")
    os.mkfifo(repo / ".git" / "refs" / "heads" / "main")  # a loose ref that is a FIFO
    assert read(repo) is None
    (repo / ".git" / "refs" / "heads" / "main").unlink()
    fifo_for(repo / ".git" / "packed-refs")
    assert read(repo) is None
    (repo / ".git" / "packed-refs").unlink()
    assert read(repo) is None  # the branch is gone: unborn
    fifo_for(repo / ".git" / "HEAD")
    assert read(repo) is None
    assert read(repo / "sub") is None


def test_a_git_file_naming_no_repository_is_none(tmp_path, home):
    (tmp_path / ".git").write_text("gitdir: /nowhere/at/all\n")
    assert read(tmp_path) is None
    (tmp_path / ".git").write_text("not a git file\n")
    assert read(tmp_path) is None


def test_a_submodule_is_read_through_its_git_file_and_skipped_by_its_parent(repo, tmp_path):
    make_repo(tmp_path / "lib")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(tmp_path / "lib"), "lib")
    git(repo, "commit", "-qm", "lib")
    lib = repo / "lib"
    assert (lib / ".git").is_file()
    assert read(lib / "sub") == {"commit": git(lib, "rev-parse", "HEAD"), "dirty": False, "root": str(lib)}
    (lib / "a.txt").write_text("changed\n")
    assert read(lib)["dirty"] is True
    assert read(repo)["dirty"] is False


CONFIGS = {
    "plain": "[core]\n\tbare = false\n\tfilemode = true\n",
    "case and comments": '[Core]\n  FileMode=No ; a comment\n# a comment\n[Section "Sub \\"q\\""]\n\tkey = x\n',
    "quotes": '[a]\n\tk = "quoted # not a comment" ; comment\n\tq = "tab\\there"  \n\te =\n',
    "bare key, old subsection": "[a.B]\nkey\n[c]\n\tv = one \\\n two\n\tw = spaced   words  \n",
    "one line": "[core]bare = true\n[alias]\n\tlg = \"log --pretty=format:'%h %s'\"\r\n",
}


@pytest.mark.parametrize("text", list(CONFIGS.values()), ids=list(CONFIGS))
def test_a_config_file_is_read_as_git_reads_it(tmp_path, home, text):
    (tmp_path / "config").write_text(text)
    listed = git(tmp_path, "config", "--file", str(tmp_path / "config"), "--list", "-z")
    theirs = [tuple(item.split("\n", 1)) if "\n" in item else (item, "true") for item in listed.split("\0") if item]
    assert gs._parse_config(text) == theirs


# ---------------------------------------------------------------- settings that change what is read


def include_chain(r: Path, levels: int, fanout: int, last: str) -> None:
    """The repository's config includes f1 `fanout` times, f1 includes f2 as many times, ...,
    f`levels` holds `last`: about fanout**levels files for git to read."""
    for i in range(1, levels):
        (r / ".git" / f"f{i}").write_text(f"[include]\n\tpath = f{i + 1}\n" * fanout)
    (r / ".git" / f"f{levels}").write_text(last)
    with open(r / ".git" / "config", "a") as f:
        f.write("[include]\n\tpath = f1\n" * fanout)


def test_includes_fanning_out_are_capped_and_unknown_at_once(repo):
    """The review's repository: about 8**9 config files to read (the runner ran past 120 s,
    git runs on too). At most MAX_CONFIG_FILES are read; what the rest sets is unknown."""
    commit = git(repo, "rev-parse", "HEAD")
    include_chain(repo, 9, 8, "[core]\n\tfilemode = false\n")
    start = time.perf_counter()
    state = read(repo)
    assert time.perf_counter() - start < 1.0
    assert state == {"commit": commit, "dirty": None, "root": None}  # core.bare, core.worktree: unknown
    config = gs._Config([repo / ".git" / "config"])
    assert config.incomplete and config.files_read == gs.MAX_CONFIG_FILES


def test_includes_nest_as_deep_as_git_lets_them_and_no_deeper(repo):
    commit = git(repo, "rev-parse", "HEAD")
    (repo / "a.txt").chmod(0o755)  # a change, unless the last include turns core.filemode off
    include_chain(repo, 10, 1, "[core]\n\tfilemode = false\n")  # f10 is read at depth 10
    assert read(repo) == {"commit": commit, "dirty": False, "root": str(repo)}
    assert status_says(repo) is False
    include_chain(repo, 11, 1, "[core]\n\tfilemode = false\n")  # f11 at depth 11: git stops
    assert git(repo, "rev-parse", "HEAD", check=False) == ""  # "exceeded maximum include depth"
    assert read(repo) == {"commit": commit, "dirty": None, "root": None}


def test_a_work_tree_set_outside_the_folder_holding_git_is_never_read(repo, tmp_path):
    """core.worktree naming another folder: git compares the index with the files there,
    hashing them (a one-bit oracle on files outside). Not read: root and dirty None."""
    commit = git(repo, "rev-parse", "HEAD")
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(repo, elsewhere, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    later(elsewhere / "a.txt")  # git hashes it: the same bytes, clean
    (repo / "inside").symlink_to(elsewhere)
    unknown = {"commit": commit, "dirty": None, "root": None}
    for configured in ("/", "../inside", "../../elsewhere", str(elsewhere)):
        git(repo, "config", "core.worktree", configured)
        assert read(repo) == read(repo / "sub") == unknown, configured
    assert status_says(repo) is False  # git reads the files elsewhere ...
    (elsewhere / "a.txt").write_text("alphA\n")
    assert status_says(repo) is True  # ... and tells a change there; the runner does not look
    assert read(repo) == unknown
    git(repo, "config", "--unset", "core.worktree")
    (repo / ".git" / "wt.inc").write_text(f"[core]\n\tworktree = {elsewhere}\n")
    git(repo, "config", "includeIf.gitdir:/nowhere/.path", "wt.inc")  # not evaluated: unknown
    assert read(repo) == unknown
    git(repo, "config", "--unset", "includeIf.gitdir:/nowhere/.path")
    assert read(repo) == {"commit": commit, "dirty": False, "root": str(repo)}
    git(repo, "config", "core.bare", "true")
    assert read(repo) == unknown


def test_a_work_tree_set_inside_the_folder_holding_git_is_honoured(repo):
    """As a submodule's git folder sets core.worktree: the folder itself, or one inside it."""
    commit = git(repo, "rev-parse", "HEAD")
    git(repo, "config", "core.worktree", "..")
    assert read(repo) == {"commit": commit, "dirty": False, "root": str(repo)}
    (repo / "a.txt").write_text("alphA\n")
    assert read(repo)["dirty"] is True == status_says(repo)
    git(repo, "checkout", "a.txt")
    git(repo, "config", "core.worktree", "../sub")  # the index's files are not found in sub
    assert read(repo) == {"commit": commit, "dirty": True, "root": str(repo / "sub")}
    assert status_says(repo) is True


def test_git_files_are_read_by_the_runners_bounded_reader(tmp_path):
    """git_objects has no file reader of its own: files.py's, with git's answers (None for
    nothing there, Unknown for what may not or cannot be read)."""
    assert "read_bounded" in go.read_file.__code__.co_names and not hasattr(go, "open_regular")
    assert "open_regular" in go.Store._open.__code__.co_names
    (tmp_path / "ten").write_bytes(b"0123456789")
    (tmp_path / "loop").symlink_to("loop")
    os.mkfifo(tmp_path / "fifo")
    assert go.read_file(tmp_path / "ten", 10) == b"0123456789"
    assert go.read_file(tmp_path / "missing", 10) is None
    assert go.read_file(tmp_path / "missing" / "x", 10) is None
    assert go.read_file(tmp_path, 10) is None  # a folder
    for path, limit in (("ten", 9), ("fifo", 10), ("/dev/zero", 10), ("/proc/self/status", 10), ("loop", 10)):
        with pytest.raises(go.Unknown):
            go.read_file(tmp_path / path, limit)


def test_git_never_opens_a_device_or_fifo(tmp_path):
    """Opening a device may act (a watchdog, a tape); an audit hook in a fresh interpreter sees
    every open: none of a FIFO or device, as object, config or ref, through a link or not."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link.idx").symlink_to("/dev/zero")
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "opened = []\n"
        "sys.addaudithook(lambda event, args: opened.append(str(args[0])) if event == 'open' else None)\n"
        "from runner.record import git_objects as go\n"
        "for p in sys.argv[1:]:\n"
        "    for read in (lambda: go.read_file(p, 10), lambda: go.Store(Path(p).parent)._open(Path(p))):\n"
        "        try:\n"
        "            read()\n"
        "        except go.Unknown:\n"
        "            continue\n"
        "        raise SystemExit(f'read {p}')\n"
        "print(json.dumps([o for o in opened if o.endswith(('zero', 'null', 'fifo', 'link.idx'))]))\n"
    )
    paths = ["/dev/zero", "/dev/null", str(tmp_path / "fifo"), str(tmp_path / "link.idx")]
    out = subprocess.run(
        [sys.executable, "-c", code, *paths], env=command_env(), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


# ---------------------------------------------------------------- a hostile repository

PROBES = ("fsmonitor", "hook", "filter", "process", "external", "textconv", "pager")


def hostile(tmp_path: Path) -> tuple:
    """A repository holding a config folder, committed, then configured to run a program
    (each writes its own probe file) wherever git would: its commit and its config folder."""
    r = tmp_path / "hostile"
    (r / "conf" / "experiment").mkdir(parents=True)
    shutil.copy(ROOT / "conf" / "experiment" / "seed_cubic.yaml", r / "conf" / "experiment" / "mine.yaml")
    (r / "notes.txt").write_text("notes\n")
    git(r, "init", "-q")
    git(r, "add", ".")
    git(r, "commit", "-qm", "one")
    commit = git(r, "rev-parse", "HEAD")
    bin_ = tmp_path / "bin"
    (bin_ / "hooks").mkdir(parents=True)
    for name in PROBES:
        script = bin_ / name
        script.write_text(f"#!/bin/sh\ntouch {tmp_path / 'probes'}/{name}\ncat\n")
        script.chmod(0o755)
    shutil.copy(bin_ / "hook", bin_ / "hooks" / "post-index-change")
    (r / ".git" / "config").write_text(
        (r / ".git" / "config").read_text()
        + f"[core]\n\tfsmonitor = {bin_}/fsmonitor\n\thooksPath = {bin_}/hooks\n\tpager = {bin_}/pager\n"
        + f'[filter "evil"]\n\tclean = {bin_}/filter\n\tsmudge = {bin_}/filter\n'
        + f'[filter "proc"]\n\tprocess = {bin_}/process\n'
        + f'[diff]\n\texternal = {bin_}/external\n[diff "evil"]\n\ttextconv = {bin_}/textconv\n'
    )
    (r / ".gitattributes").write_text("* filter=evil diff=evil\n*.yaml filter=proc\n")
    for f in (r / "notes.txt", r / "conf" / "experiment" / "mine.yaml"):
        later(f)  # git would hash them again, through the filters
    (tmp_path / "probes").mkdir()
    return r, commit


def test_git_itself_runs_the_hostile_repositorys_programs(tmp_path, home):
    """The attack is real: git status in a copy of the repository runs its programs."""
    r, _ = hostile(tmp_path)
    shutil.copytree(r, tmp_path / "copy", symlinks=True)
    git(tmp_path / "copy", "status", check=False)
    assert {"fsmonitor", "hook", "filter"} <= {p.name for p in (tmp_path / "probes").iterdir()}


def test_a_hostile_repository_runs_nothing_and_its_commit_is_read(tmp_path, home):
    r, commit = hostile(tmp_path)
    state = read(r / "conf")
    assert state == {"commit": commit, "dirty": None, "root": str(r)}  # the filter makes it unknown
    assert list((tmp_path / "probes").iterdir()) == []


def test_no_program_starts_while_git_state_is_read(tmp_path, home):
    """An audit hook in a fresh interpreter sees every process start: none while reading."""
    r, commit = hostile(tmp_path)
    code = (
        "import json, subprocess, sys\n"
        "from pathlib import Path\n"
        "starts = []\n"
        "kinds = ('subprocess.Popen', 'os.system', 'os.exec', 'os.posix_spawn', 'os.spawn', 'os.fork', 'os.forkpty')\n"
        "sys.addaudithook(lambda event, args: starts.append(event) if event in kinds else None)\n"
        "from runner.record.git_state import git_state\n"
        "states = [git_state.__wrapped__(Path(p)) for p in sys.argv[1:]]\n"
        "during = list(starts)\n"
        "subprocess.run(['true'])\n"  # the hook does see a process start
        "print(json.dumps({'states': states, 'during': during, 'control': starts[len(during):]}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(r), str(ROOT)], env=command_env(), capture_output=True, text=True, timeout=60
    )
    seen = json.loads(out.stdout)
    assert seen["during"] == [] and seen["control"] == ["subprocess.Popen"]
    assert seen["states"][0]["commit"] == commit
    assert seen["states"][1]["commit"] == git(ROOT, "rev-parse", "HEAD")
    assert list((tmp_path / "probes").iterdir()) == []


@pytest.mark.slow
def test_a_job_from_a_hostile_repositorys_config_folder_records_its_commit_and_runs_nothing(tmp_path, home):
    r, commit = hostile(tmp_path)
    (tmp_path / "run").mkdir()
    proc = cli(["--config-dir", str(r / "conf"), "experiment=mine"], cwd=tmp_path / "run")
    assert proc.returncode == 0, proc.stderr
    (results,) = (tmp_path / "run").glob("outputs/**/results.json")
    env = json.loads(results.read_text())["environment"]
    states = {os.path.realpath(k): v for k, v in env["git"].items()}
    assert states[str(r / "conf")] == {"commit": commit, "dirty": None, "root": str(r)}
    assert env["runner_git"]["commit"] == git(ROOT, "rev-parse", "HEAD")
    assert list((tmp_path / "probes").iterdir()) == []
