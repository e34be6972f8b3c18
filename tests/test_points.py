"""Evaluation points: generators, grids over several inputs, files; refused forms name the key."""

from __future__ import annotations

import numpy as np
import pytest

from runner.config import points
from runner.errors import ConfigError
from tests.helpers import ROOT, function_config

GENERATED = [
    # id, point entry, expected array
    ("number", 2.5, np.asarray(2.5)),
    ("nested list", [[1, 2], [3, 4]], np.array([[1, 2], [3, 4]])),
    ("linspace", {"linspace": [0, 1, 5]}, np.array([0.0, 0.25, 0.5, 0.75, 1.0])),
    ("arange", {"arange": [0, 1, 0.25]}, np.array([0.0, 0.25, 0.5, 0.75])),
    (
        "random normal is seeded",
        {"random": {"shape": [2, 3], "seed": 7}},
        np.random.default_rng(7).standard_normal([2, 3]),
    ),
    (
        "random uniform",
        {"random": {"shape": [4], "distribution": "uniform", "seed": 1}},
        np.random.default_rng(1).uniform(0, 1, [4]),
    ),
]


@pytest.mark.parametrize("entry, want", [g[1:] for g in GENERATED], ids=[g[0] for g in GENERATED])
def test_generated(entry, want):
    np.testing.assert_array_equal(points.evaluate("point.x", entry), want)


def test_grid_meshes_axes_in_order_with_ij_indexing():
    got = points.evaluate_all("point", {"x": {"grid": {"linspace": [0, 2, 3]}}, "c": 5.0, "y": {"grid": [10.0, 20.0]}})
    assert list(got) == ["x", "c", "y"]
    np.testing.assert_array_equal(got["x"], [[0, 0], [1, 1], [2, 2]])  # x varies along dimension 0
    np.testing.assert_array_equal(got["y"], [[10, 20], [10, 20], [10, 20]])  # y along dimension 1
    assert got["c"].shape == ()


def test_a_single_grid_axis_is_the_axis_itself():
    got = points.evaluate_all("point", {"x": {"grid": {"arange": [0, 3, 1]}}})
    np.testing.assert_array_equal(got["x"], [0, 1, 2])


def test_grid_run_is_one_vectorized_call(run_job):
    # f = x * y**2 on a 3 x 2 grid: df/dx = y**2, df/dy = 2 x y at every point
    cfg = function_config(
        {"f": "x * y ** 2"},
        {"x": {"grid": [1.0, 2.0, 3.0]}, "y": {"grid": [-1.0, 2.0]}},
        [{"target": "f", "sources": ["x", "y"]}],
    )
    ran = run_job(cfg)
    x, y = np.meshgrid([1.0, 2.0, 3.0], [-1.0, 2.0], indexing="ij")
    np.testing.assert_allclose(ran.derivatives["df/d(x,y)"]["x"], y**2)
    np.testing.assert_allclose(ran.derivatives["df/d(x,y)"]["y"], 2 * x * y)


def test_shipped_grid_experiment(run_job):
    ran = run_job(["experiment=grid"])
    x, y = np.meshgrid(np.linspace(0.0, 3.0, 4), [-1.0, 0.0, 1.0], indexing="ij")
    np.testing.assert_allclose(ran.derivatives["df/d(x,y)"]["x"], np.cos(x) * y**2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ran.derivatives["df/d(x,y)"]["y"], 2 * np.sin(x) * y, rtol=1e-5, atol=1e-6)


def test_npy_file_relative_to_the_working_folder(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "x.npy", np.array([[1.0, 2.0], [3.0, 4.0]]))
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(points.evaluate("point.x", {"file": "data/x.npy"}), [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(
        points.evaluate("point.x", {"file": str(tmp_path / "data" / "x.npy")}), [[1.0, 2.0], [3.0, 4.0]]
    )


@pytest.mark.parametrize(
    "text, want",
    [("1,2,3\n", [1.0, 2.0, 3.0]), ("1\n2\n3\n", [1.0, 2.0, 3.0]), ("1,2\n3,4\n", [[1.0, 2.0], [3.0, 4.0]])],
    ids=["row", "column", "table"],
)
def test_csv_file(tmp_path, monkeypatch, text, want):
    (tmp_path / "p.csv").write_text(text)
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(points.evaluate("point.x", {"file": "p.csv"}), want)


def test_file_as_a_grid_axis(tmp_path, monkeypatch):
    (tmp_path / "a.csv").write_text("1\n2\n")
    monkeypatch.chdir(tmp_path)
    got = points.evaluate_all("point", {"x": {"grid": {"file": "a.csv"}}, "y": {"grid": [0.0, 1.0, 2.0]}})
    assert got["x"].shape == got["y"].shape == (2, 3)


def test_shipped_file_experiment(run_job, monkeypatch):
    monkeypatch.chdir(ROOT)  # its path is relative: run from the repository root, like the README
    ran = run_job(["experiment=file_points"])
    assert ran.derivatives == {"dy/dx": [-3.0, -1.0, 0.0, 1.0, 5.0]}


def _pickled(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return "obj.npy"


def _text(tmp_path):
    (tmp_path / "p.txt").write_text("1 2 3")
    return "p.txt"


def _bad_csv(tmp_path):
    (tmp_path / "p.csv").write_text("1,two,3\n")
    return "p.csv"


def _big_npy(tmp_path):
    # only the header is read to refuse it: a memory-mapped file of 2^27 + 1 bytes
    arr = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.int8, shape=(points.MAX_ELEMENTS + 1,))
    del arr
    return "big.npy"


REFUSED_FILES = [
    ("pickled objects", _pickled, "cannot read obj.npy"),
    ("not .npy or .csv", _text, "only .npy and .csv"),
    ("missing", lambda tmp_path: "nowhere.npy", "no such file"),
    ("not numbers", _bad_csv, "cannot read p.csv"),
    ("too large", _big_npy, "exceeds the limit"),
]


@pytest.mark.parametrize("make, words", [r[1:] for r in REFUSED_FILES], ids=[r[0] for r in REFUSED_FILES])
def test_refused_files(tmp_path, monkeypatch, make, words):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        points.evaluate("point.x", {"file": make(tmp_path)})
    assert err.value.key == "point.x.file"
    assert words in err.value.message


REFUSED = [
    # id, point mapping, the key at fault, words
    ("grid axis not 1-D", {"x": {"grid": [[1.0, 2.0]]}}, "point.x.grid", "must be 1-D"),
    (
        "grid too large",
        {"x": {"grid": {"linspace": [0, 1, 2**14]}}, "y": {"grid": {"linspace": [0, 1, 2**14]}}},
        "point (grid of x, y)",
        "exceeds the limit",
    ),
    ("grid inside a generator", {"x": {"grid": {"grid": [1.0]}}}, "point.x.grid.grid", "whole input"),
    ("unknown generator", {"x": {"logspace": [0, 1, 3]}}, "point.x", "a generator is one of"),
    ("linspace too large", {"x": {"linspace": [0, 1, 2**28]}}, "point.x", "exceeds the limit"),
]


@pytest.mark.parametrize("raw, key, words", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused(raw, key, words):
    with pytest.raises(ConfigError) as err:
        points.evaluate_all("point", raw)
    assert err.value.key == key
    assert words in err.value.message
