"""The run log: strict JSON, non-finite numbers as strings, large tensors beside it."""

import json
import math

import numpy as np
import pytest

from runner.record import runlog
from tests.helpers import function_config


def strict_load(path):
    def refuse(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.mark.parametrize(
    "value, expected",
    [
        (1.5, 1.5),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        ([1.0, math.nan, [math.inf]], [1.0, "NaN", ["Infinity"]]),
        (3, 3),
    ],
    ids=["finite", "nan", "inf", "-inf", "nested", "int"],
)
def test_non_finite_numbers_are_spelled_as_strings(value, expected):
    assert runlog.plain(value) == expected


def test_results_json_is_strict_and_complete(run_job):
    cfg = function_config({"y": "log(x)", "z": "sqrt(x)"}, {"x": [0.0, 1.0]}, [{"target": "z", "sources": "x"}])
    ran = run_job(cfg)
    log = strict_load(ran.folder / "results.json")
    assert log["values"]["y"] == ["-Infinity", 0.0]
    assert log["derivatives"][0]["value"] == ["Infinity", 0.5]
    assert set(log) >= {"schema_version", "status", "values", "derivatives", "error", "expect", "environment", "timing"}
    env = log["environment"]
    assert env["tensorflow"] and env["numpy"] and env["hydra"] and env["omegaconf"] and env["python"]
    assert not list(ran.folder.glob(".*.tmp")), "no temporary file is left behind"


def test_large_tensors_go_to_arrays_npz(run_job):
    cfg = function_config(
        {"y": "x * x"},
        {"x": {"linspace": [0.0, 1.0, 1001]}},
        [{"target": "y", "sources": "x"}],
        log={"max_inline_elements": 1000},
    )
    ran = run_job(cfg)
    ref = ran.derivatives["dy/dx"]
    assert ref["array"] == {"file": "arrays.npz", "key": "derivatives/dy/dx", "shape": [1001], "dtype": "float32"}
    assert ref["summary"]["max"] == pytest.approx(2.0)
    with np.load(ran.folder / "arrays.npz") as arrays:
        np.testing.assert_allclose(arrays["derivatives/dy/dx"], 2 * np.linspace(0, 1, 1001), rtol=1e-6)
        assert arrays["values/y"].shape == (1001,)
    # nothing of the 1001-element tensors inline (the environment record's size follows argv)
    log = json.loads((ran.folder / "results.json").read_text())
    log.pop("environment")
    assert len(json.dumps(log)) < 3000


def test_atomic_write_replaces_whole_files(tmp_path):
    target = tmp_path / "f.json"
    runlog.write_atomic(target, b"first")
    runlog.write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_a_signal_just_after_the_temporary_file_is_made_leaves_none_behind(tmp_path, monkeypatch):
    """A KeyboardInterrupt (SIGINT) can land as soon as the temporary file exists, before its
    name was handed back (seen in CI: a `.results.json.*.tmp` left in a stopped sweep)."""
    import os

    real_open = os.open

    def interrupted_open(path, *args, **kwargs):
        fd = real_open(path, *args, **kwargs)
        if str(path).endswith(".tmp"):
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    monkeypatch.setattr(os, "open", interrupted_open)
    with pytest.raises(KeyboardInterrupt):
        runlog.write_atomic(tmp_path / "f.json", b"data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "arr",
    [
        np.full(200_001, 3e38, dtype=np.float32),  # the float32 sum overflows
        np.array([1e308, 1e308, np.inf, np.nan]),  # even float64's does
        np.full(70_000, 60000.0, dtype=np.float16),
    ],
    ids=["float32", "float64", "float16"],
)
def test_the_summary_mean_of_large_finite_numbers_is_finite(arr):
    with np.errstate(all="raise"):  # no NumPy warning reaches the console
        summary = runlog.array_reference("values/y", arr)["summary"]
    finite = arr[np.isfinite(arr)].astype(np.float64)
    assert summary["mean"] == pytest.approx(float(np.mean(finite / finite.max())) * finite.max(), rel=1e-6)
    assert math.isfinite(summary["mean"]) and summary["non_finite"] == arr.size - finite.size


def test_a_run_whose_float32_values_sum_past_the_range_is_logged(run_job):
    cfg = function_config(
        {"y": "exp(x)"}, {"x": {"linspace": [80.0, 88.0, 200_001]}}, [{"target": "y", "sources": "x"}], verify="off"
    )
    ran = run_job(cfg)
    summary = strict_load(ran.folder / "results.json")["values"]["y"]["summary"]
    assert math.isfinite(summary["mean"]) and summary["max"] == pytest.approx(math.exp(88.0), rel=1e-5)
