"""Bounded reads of files a config names (runner/config/files.py): the hostile files of the threat model."""

import os
from pathlib import Path

import pytest

from runner.config.files import read_bounded
from runner.errors import ConfigError


def _hostile(folder):
    os.mkfifo(folder / "fifo.yaml")
    (folder / "zero.yaml").symlink_to("/dev/zero")
    (folder / "loop.yaml").symlink_to("loop.yaml")
    (folder / "passwd.yaml").symlink_to("/etc/passwd")
    (folder / "big.yaml").write_bytes(b"\0" * 1001)
    (folder / "sub").mkdir()
    (folder / "dir.yaml").symlink_to("sub")


@pytest.mark.parametrize(
    "name, message",
    [
        ("fifo.yaml", "is a FIFO, not a regular file"),
        ("zero.yaml", "leads to /dev/zero, outside its folder"),
        ("loop.yaml", "Too many levels of symbolic links"),
        ("passwd.yaml", "leads to /etc/passwd, outside its folder"),
        ("big.yaml", "is 1,001 bytes; the limit is 1,000"),
        ("dir.yaml", "is a folder, not a regular file"),
        ("missing.yaml", "No such file or directory"),
    ],
)
def test_a_hostile_file_is_refused_before_it_is_read(tmp_path, name, message):
    _hostile(tmp_path)
    with pytest.raises(ConfigError) as info:
        read_bounded(tmp_path / name, "point.x", limit=1000, inside=tmp_path)
    assert info.value.key == "point.x" and message in info.value.message


def test_a_device_is_refused_without_a_folder_too():
    with pytest.raises(ConfigError, match="a character device, not a regular file"):
        read_bounded(Path("/dev/zero"), "k", limit=10)


def test_a_file_whose_size_is_misreported_is_read_only_up_to_the_limit():
    # /proc files report a size of 0; the read itself stops at the limit
    with pytest.raises(ConfigError, match="holds more than 4 bytes"):
        read_bounded(Path("/proc/self/status"), "k", limit=4)


def test_a_regular_file_inside_its_folder_is_read(tmp_path):
    (tmp_path / "a.yaml").write_text("x: 1\n")
    (tmp_path / "link.yaml").symlink_to("a.yaml")
    assert read_bounded(tmp_path / "link.yaml", "k", limit=100, inside=tmp_path) == b"x: 1\n"


def test_what_a_message_quotes_is_short_and_escaped():
    from runner.errors import short

    assert short("root:x:0:0\x1b[31m" * 10) == repr("root:x:0:0\x1b[31m" * 10)[:37] + "..."
    assert short("ok") == "'ok'" and len(short("A" * 1000, 20)) == 20


ALIASES = "l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 6)
)


def test_yaml_whose_aliases_expand_past_the_limit_is_refused_before_loading():
    from runner.config.files import check_yaml_size

    with pytest.raises(ConfigError, match="expands to over 100,000 values"):
        check_yaml_size(ALIASES, "a.yaml")  # 362 bytes, 10^6 values: OmegaConf took minutes
    check_yaml_size("".join(ALIASES.splitlines(keepends=True)[:4]), "a.yaml")  # l0-l3: about 12,000 values
    check_yaml_size("x: [" + ", ".join(["1"] * 99_000) + "]\n", "a.yaml")  # no anchor: not counted


@pytest.mark.parametrize("text", ["name: &a [1, *a]\n", "a: &a {b: [*a]}\n", "a: &a [&b [*a]]\n"])
def test_yaml_with_an_alias_inside_its_own_anchor_is_refused(text):
    from runner.config.files import check_yaml_size

    with pytest.raises(ConfigError, match="alias inside its own anchor"):
        check_yaml_size(text, "a.yaml")  # 21 bytes ran without end and ate memory (found by review)
