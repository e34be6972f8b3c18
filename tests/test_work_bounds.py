"""Work is bounded before it starts: every job above a limit is refused at once, in one line.

`BOUNDS`: the issue's reproducers (each took seconds to minutes and gigabytes on main),
scaled to a size that is refused in milliseconds, before TensorFlow: the key at fault and
what the message must say. `RAISED`: each `limits.*` key moves its bound (a small job just
over a lowered limit is refused, and runs with the limit raised). `HOSTILE_FILES`: point
files that must be refused without being read (FIFOs, devices, links out of their folder,
sparse files whose size or header gives them away). Then the command line: one line, exit 2.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, List, Tuple

import numpy as np
import pytest

from runner import job
from runner.config import settings
from runner.config import spec as specs
from runner.errors import ConfigError
from tests.helpers import cli, composed, exit_and_tensorflow, function_config

Change = Callable[[Path], List[Tuple[str, Any]]]


@functools.lru_cache(maxsize=1)
def _base():
    return function_config({"y": "sin(x)"}, {"x": 0.5}, [{"target": "y", "sources": "x"}])


def _config(changes: List[Tuple[str, Any]]) -> dict:
    """y = sin(x) at x = 0.5, dy/dx, with (dotted key, value) changes applied."""
    cfg = copy.deepcopy(_base())
    for key, value in changes:
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return cfg


def _request(**options: Any) -> List[dict]:
    return [{"target": "y", "sources": "x", **options}]


def _chain(n: int) -> dict:
    return {"y": "x * 1.0001", **{f"s{i}": f"{'y' if i == 1 else f's{i - 1}'} * 1.0001" for i in range(1, n)}}


BOUNDS: List[Tuple[str, Change, str, str]] = [
    # id, config change, the key at fault, what the message must say.
    # On main, for each: the figures (peak RSS, time), measured at full size.
    (
        "jacobian over 32,768 points (main: 13.1 GB, 53 s)",
        lambda tmp: [("point.x", {"random": {"shape": [32768]}}), ("derivatives", _request(kind="jacobian"))],
        "point",
        "the job needs at least 12.0 GiB (2 tensors and 1 gradient(s) of 4-byte numbers; the largest, "
        "jacobian(y; x), has shape [32768, 32768]; the finite-difference check alone holds 8.0 GiB (verify: off "
        "skips it)); the limit is 4.0 GiB (raise it with limits.memory)",
    ),
    (
        "30,000 scalar steps with a hessian (main: 19.2 GB, 132 s)",
        lambda tmp: [("function.steps", _chain(30000)), ("derivatives", [{"target": "s29999", "sources": "x"}])],
        "function.steps",
        "30,000 steps; the limit is 1,000 (raise it with limits.steps)",
    ),
    (
        "order 50 (main: past two minutes)",
        lambda tmp: [("derivatives", _request(order=50))],
        "derivatives[0].order",
        "order 50 would nest 50 tapes; the limit is 8 (raise it with limits.order)",
    ),
    (
        "finite-difference check of a 4,096-element source (main: ~100 minutes)",
        lambda tmp: [
            ("point.x", {"random": {"shape": [4096]}}),
            ("function.steps", {"y": "reduce_sum(sin(x))"}),
            ("derivatives", _request(kind="hessian")),
        ],
        "verify",
        "the finite-difference check would evaluate 275,012,149,250 elements (hessian(y; x) alone runs the "
        # 4,097 elements a run: sin(x), then its sum
        "function 67,125,249 times, 4,097 elements each); the limit is 10,000,000,000 (raise it with "
        "limits.check_evaluations, or set verify: off)",
    ),
    (
        "the check's differences of a jacobian by 4,096 elements",
        lambda tmp: [
            ("function.inputs", ["x", "c"]),
            ("point", {"x": {"random": {"shape": [4096, 1]}}, "c": {"random": {"shape": [1, 16]}}}),
            ("function.steps", {"y": "sin(x) * c"}),
            ("derivatives", _request(kind="jacobian")),
        ],
        "point",
        "has shape [4096, 16, 4096, 1]; the finite-difference check alone holds 6.0 GiB (verify: off skips it)); "
        "the limit is 4.0 GiB",
    ),
    (
        "a hessian's output is n x n",
        lambda tmp: [
            ("point.x", {"random": {"shape": [20000]}}),
            ("function.steps", {"y": "reduce_sum(sin(x))"}),
            ("derivatives", _request(kind="hessian")),
        ],
        "point",
        "the largest, hessian(y; x), has shape [20000, 20000]); the limit is 4.0 GiB",
    ),
    (
        "a 1 GiB CSV of NUL bytes (main: 33 s, 9.3 GB)",
        lambda tmp: [("point.x", {"file": _sparse(tmp / "nul.csv", 2**30)})],
        "point.x.file",
        "nul.csv is 1,073,741,824 bytes; the limit is 268,435,456",
    ),
    (
        "a <f16 .npy of 2^27 elements (main: 8.9 GB)",
        lambda tmp: [("point.x", {"file": _npy_header(tmp / "f16.npy", "<f16", (2**27,))})],
        "point.x.file",
        "cannot read f16.npy: it holds '<f16' (float128) numbers; a point holds integers or floats of at most 8 bytes",
    ),
]


@pytest.mark.parametrize("change, key, message", [r[1:] for r in BOUNDS], ids=[r[0] for r in BOUNDS])
def test_work_above_a_bound_is_refused_before_it_starts(run_job, tmp_path, change, key, message):
    cfg = _config(change(tmp_path))
    t0 = time.perf_counter()
    ran = run_job(cfg)
    took = time.perf_counter() - t0
    assert ran.code == 2
    assert ran.log["error"]["type"] == "ConfigError" and ran.log["error"]["key"] == key
    assert message in ran.log["error"]["message"]
    assert "\n" not in ran.log["error"]["message"]
    assert ran.log["values"] == {} and "import_tensorflow_s" not in ran.log["timing"]  # refused before it
    # not a speed goal (the machine is shared: 1.48 s was seen under load), only proof that the
    # work was not begun: the smallest of it takes 132 s
    assert took < 30.0, f"refused in {took:.2f} s"


# ---- the limits keys move the bounds -----------------------------------------------------

RAISED = [
    # id, the job, the limit key, a value it is refused under, the message, a value it runs under
    ("steps", [("function.steps", _chain(3))], "steps", 2, "3 steps; the limit is 2", 3),
    ("order", [("derivatives", _request(order=3))], "order", 2, "order 3 would nest 3 tapes; the limit is 2", 3),
    (
        "memory",
        [("point.x", {"random": {"shape": [1000]}})],
        "memory",
        "40KiB",
        "the job needs at least 43.0 KiB",
        "1MiB",
    ),
    (
        "check_evaluations",
        [],
        "check_evaluations",
        40_000,
        "the finite-difference check would evaluate 42,000 elements (dy/dx alone runs the function 20 times",
        50_000,
    ),
]


@pytest.mark.parametrize("changes, limit, low, message, high", [r[1:] for r in RAISED], ids=[r[0] for r in RAISED])
def test_a_limit_key_moves_its_bound(run_job, changes, limit, low, message, high):
    with pytest.raises(ConfigError) as info:
        specs.build(_config(changes + [(f"limits.{limit}", low)]))
    assert message in info.value.message and f"(raise it with limits.{limit}" in info.value.message
    ran = run_job(_config(changes + [(f"limits.{limit}", high)]))
    assert ran.code == 0 and ran.log["status"] == "ok"


def test_verify_off_runs_no_check_and_needs_no_check_budget():
    specs.build(_config([("limits.check_evaluations", 1), ("verify", "off")]))


def test_limits_come_from_the_schema_and_the_command_line():
    """`--cfg job` shows them (they are in the composed config), and overrides raise them."""
    assert composed([])["limits"] == {"memory": "4GiB", "order": 8, "steps": 1000, "check_evaluations": 10**10}
    cfg = composed(["limits.memory=8589934592", "limits.order=12"])
    assert settings.build(cfg).limits == settings.Limits(2**33, 12, 1000, 10**10)
    assert settings.build(composed(["limits.memory=16GiB"])).limits.memory == 16 * 2**30


# ---- point files: checked by kind, size and header before they are read ------------------


def _sparse(path: Path, size: int, head: bytes = b"") -> str:
    """A file of `size` bytes that takes no disk space: `head`, then a hole of NUL bytes."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return str(path)


def _npy_header(path: Path, descr: str, shape: Tuple[int, ...], data_bytes: int | None = None) -> str:
    """A .npy of which only the header is written; the data a sparse hole (or `data_bytes`)."""
    import io

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": descr, "fortran_order": False, "shape": shape})
    count = int(np.prod(shape, dtype=object))
    size = len(head.getvalue()) + (count * np.dtype(descr).itemsize if data_bytes is None else data_bytes)
    return _sparse(path, size, head.getvalue())


def _link(path: Path, to: str) -> str:
    path.symlink_to(to)
    return str(path)


def _fifo(path: Path) -> str:
    os.mkfifo(path)
    return str(path)


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _huge_header(path: Path) -> str:
    # version 2.0 gives a 4-byte header length: 2 GiB of header, which NumPy would read first
    return _write(path, b"\x93NUMPY\x02\x00" + (2**31).to_bytes(4, "little") + b"{" * 100)


def _in_dev_shm(tmp_path: Path) -> str:
    if not os.access("/dev/shm", os.W_OK):
        pytest.skip("no writable /dev/shm")
    path = Path("/dev/shm") / f"runner-test-{os.getpid()}-{tmp_path.name}.csv"
    path.write_text("1,2,3\n")
    return str(path)


HOSTILE_FILES = [
    # id, make the file (in tmp_path) -> its path, what the message must say
    ("FIFO .csv", lambda tmp: _fifo(tmp / "fifo.csv"), "fifo.csv is a FIFO, not a regular file"),
    ("FIFO .npy", lambda tmp: _fifo(tmp / "fifo.npy"), "fifo.npy is a FIFO, not a regular file"),
    ("link to /dev/zero", lambda tmp: _link(tmp / "zero.npy", "/dev/zero"), "leads to /dev/zero, outside its folder"),
    (
        "link to /etc/passwd",
        lambda tmp: _link(tmp / "pw.csv", "/etc/passwd"),
        "leads to /etc/passwd, outside its folder",
    ),
    (
        "link to /proc/self/environ",
        lambda tmp: _link(tmp / "env.csv", "/proc/self/environ"),
        "/environ, outside its folder",
    ),
    (
        "link through a link in the same folder",
        lambda tmp: (_link(tmp / "b.csv", "/etc/passwd"), _link(tmp / "a.csv", "b.csv"))[1],
        "leads to /etc/passwd, outside its folder",
    ),
    ("a file under /dev", _in_dev_shm, "no point is read from under /dev"),
    ("1 GiB sparse CSV of NUL bytes", lambda tmp: _sparse(tmp / "nul.csv", 2**30), "is 1,073,741,824 bytes"),
    (
        "small CSV of NUL bytes",
        lambda tmp: _write(tmp / "nul.csv", b"1,2\n" + b"\0" * 1000),
        "nul.csv holds a NUL byte (at byte 4): it is not a text file",
    ),
    ("CSV not UTF-8", lambda tmp: _write(tmp / "bin.csv", b"1,2\n\xff\xfe\n"), "bin.csv is not UTF-8 text (byte 4)"),
    (
        "CSV with a long bad field",
        lambda tmp: _write(tmp / "p.csv", b"1,2\n3," + b"A" * 100 + b"\n"),
        "cannot read p.csv: line 2, field 2 is not a number: 'AAAAAAAAAAAAAAAA...",
    ),
    (
        "CSV with ragged rows",
        lambda tmp: _write(tmp / "p.csv", b"1,2\n3\n"),
        "cannot read p.csv: line 2 has 1 fields, the lines above it 2",
    ),
    (
        "<f16 .npy header of 2^27 elements",
        lambda tmp: _npy_header(tmp / "f16.npy", "<f16", (2**27,)),
        "it holds '<f16' (float128) numbers",
    ),
    (
        "complex .npy",
        lambda tmp: _npy_header(tmp / "c.npy", "<c8", (3,)),
        "cannot read c.npy: it holds '<c8' (complex64) numbers",
    ),
    (
        "float64 .npy header of 2^27 + 1 elements",
        lambda tmp: _npy_header(tmp / "big.npy", "<f8", (2**27 + 1,)),
        "134,217,729 elements (about 1.0 GiB as float64) exceeds the limit of 134,217,728",
    ),
    (
        ".npy shorter than its header says",
        lambda tmp: _npy_header(tmp / "short.npy", "<f8", (1000,), data_bytes=80),
        "cannot read short.npy: its header says 8,128 bytes, the file has 208",
    ),
    (
        ".npy header of 2 GiB",
        lambda tmp: _huge_header(tmp / "h.npy"),
        "cannot read h.npy: not a .npy file of version 1 or 2 (its header)",
    ),
]


@pytest.mark.parametrize("make, message", [r[1:] for r in HOSTILE_FILES], ids=[r[0] for r in HOSTILE_FILES])
def test_a_hostile_point_file_is_refused_without_reading_it(run_job, tmp_path, make, message):
    files = tmp_path / "files"
    files.mkdir()
    path = make(files)
    try:
        t0 = time.perf_counter()
        ran = run_job(_config([("point.x", {"file": path})]))
        took = time.perf_counter() - t0
    finally:
        if path.startswith("/dev/shm/"):
            os.unlink(path)
    assert ran.code == 2
    assert ran.log["error"]["key"] == "point.x.file"
    assert message in ran.log["error"]["message"], ran.log["error"]["message"]
    # not a speed goal (the machine is shared: 1.48 s was seen under load), only proof that the
    # work was not begun: the smallest of it takes 132 s
    assert took < 30.0, f"refused in {took:.2f} s"


def test_a_linked_secret_never_reaches_the_terminal_or_the_log(tmp_path, capsys):
    """Issue 12: a CSV point linking to /etc/passwd or /proc/self/environ echoed its first field."""
    secrets = {"/etc/passwd": Path("/etc/passwd").read_text().split(":")[0] + ":"}
    environ = Path("/proc/self/environ").read_bytes().split(b"\0")[0].decode(errors="replace")
    if environ:
        secrets["/proc/self/environ"] = environ
    for i, (target, secret) in enumerate(secrets.items()):
        link = tmp_path / f"point{i}.csv"
        link.symlink_to(target)
        folder = tmp_path / f"run{i}"
        code = job.run(_config([("point.x", {"file": str(link)})]), folder, name="secret")
        out = capsys.readouterr()
        assert code == 2
        assert out.err.startswith("config error: point.x.file: ") and out.err.count("\n") == 1
        for text in (out.out, out.err, (folder / "results.json").read_text()):
            assert secret not in text


def test_a_good_npy_is_read_whole(tmp_path):
    """The header-first reader gives what np.load gives: C and Fortran order, any byte order."""
    from runner.config import points

    for i, arr in enumerate(
        [
            np.arange(6.0).reshape(2, 3),
            np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
            np.arange(4, dtype=">f4"),
            np.zeros((0, 3)),
            np.float16(2.5),
        ]
    ):
        np.save(tmp_path / f"a{i}.npy", arr)
        got = points.evaluate("point.x", {"file": str(tmp_path / f"a{i}.npy")})
        np.testing.assert_array_equal(got, arr)
        assert got.shape == arr.shape and got.dtype == arr.dtype


def test_a_link_inside_its_folder_is_read(tmp_path):
    from runner.config import points

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "real.csv").write_text("1,2,3\n")
    (tmp_path / "data" / "alias.csv").symlink_to("real.csv")
    np.testing.assert_array_equal(points.evaluate("point.x", {"file": str(tmp_path / "data" / "alias.csv")}), [1, 2, 3])


# ---- through the command line -----------------------------------------------------------

CLI_ROWS = [
    # id, arguments, the one line on stderr
    (
        "order",
        ["derivatives.0.order=50"],
        "config error: derivatives[0].order: order 50 would nest 50 tapes; the limit is 8 (raise it with limits.order)",
    ),
    (
        "steps",
        ["limits.steps=1", "+function.steps.z=y * 2"],
        "config error: function.steps: 2 steps; the limit is 1 (raise it with limits.steps)",
    ),
    ("memory", ["limits.memory=16"], "config error: point: the job needs at least 44 bytes"),
    ("check", ["limits.check_evaluations=1000"], "config error: verify: the finite-difference check would evaluate"),
    ("file", ["point.x={file: zero.npy}"], "config error: point.x.file: "),
    ("a bad limit", ["limits.memory=lots"], "config error: limits.memory: expected a whole number of bytes > 0"),
]


@pytest.mark.slow
def test_cli_refuses_work_above_a_bound_in_one_line_without_tensorflow(tmp_path):
    (tmp_path / "zero.npy").symlink_to("/dev/zero")
    for name, args, line in CLI_ROWS:
        result = cli(args, cwd=tmp_path, timeout=60)
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.startswith(line) and result.stderr.count("\n") == 1, (name, result.stderr)
        assert result.stdout == ""
        assert exit_and_tensorflow(args, tmp_path) == ["2", "False"], name
    for log in tmp_path.glob("outputs/**/results.json"):
        assert json.loads(log.read_text())["status"] == "error"


@pytest.mark.slow
def test_cfg_job_shows_the_limits(tmp_path):
    result = cli(["--cfg", "job", "limits.order=10"], cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "limits:\n  memory: 4GiB\n  order: 10\n  steps: 1000\n  check_evaluations: 10000000000\n" in result.stdout


# ---- what one run of the check computes: every tensor a step builds, a product's multiply-adds


@pytest.mark.parametrize(
    "expression, shapes, work",
    [
        ("x * x", {"x": (1000,)}, 1000),
        ("reduce_sum(x * y)", {"x": (1000,), "y": (1000,)}, 1000 + 1),  # the product is built, then summed
        ("W @ v", {"W": (3, 5), "v": (5, 2)}, 3 * 2 * 5),
        ("matmul(W, v)", {"W": (4, 1000), "v": (1000, 1)}, 4 * 1000),
        ("tanh(W @ v) + 1.0", {"W": (4, 1000), "v": (1000, 1)}, 4 * 1000 + 4 + 4),
        ("x", {"x": (1000,)}, 0),  # a name computes nothing (the step still costs TensorFlow's fixed cost)
    ],
)
def test_a_steps_work_counts_what_it_builds(expression, shapes, work):
    from runner.language import expression as ex
    from runner.language import shapes as sh

    assert sh.infer_work(ex.parse(expression), shapes)[1] == work


def test_a_product_over_a_long_inner_axis_counts_its_multiply_adds():
    """y = reduce_sum(W @ v), W [2, 2^20]: the product has 2 elements, its work 2^21 per run.
    Counted by output size (as before), dy/dv's 16 runs (a projection) came to 2,000 elements
    each, 34,000 in all: admitted under a limit of 10^6 that the real 3.6e7 is far above."""
    cfg = function_config(
        {"y": "reduce_sum(W @ v)"},
        {"W": {"random": {"shape": [2, 2**20]}}, "v": {"random": {"shape": [2**20, 1]}}},
        [{"target": "y", "sources": "v"}],
    )
    cfg.update(verify="finite_difference", limits={"check_evaluations": 10**6})
    with pytest.raises(ConfigError) as info:
        specs.build(cfg)
    assert info.value.key == "verify", info.value.key
    assert (
        "would evaluate 35,651,601 elements" in info.value.message and "2,097,153 elements each" in info.value.message
    )
