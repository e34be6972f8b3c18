"""What a user meets in the files and the console (issue 16, items 1, 5 and 7).

- Files follow the user's umask: every file of a run folder, a rerun's and a sweep's, with
  umask 0022 and 0077, through the real command line.
- No empty `runner.log`; a warning shown whole-worded; no value padded to another row's
  width; no schema among `--help`'s choices; no SyntaxWarning from an expression.
- The environment record: package versions, devices and TensorFlow's build, and a rerun
  that names which of them differ when its numbers do.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path

import pytest

from runner import job, rerun
from runner.config import spec as specs
from runner.errors import ConfigError
from runner.language import expression
from runner.record import console, runlog
from tests.helpers import ROOT, command_env, composed, function_config, sweep_dirs

# a 1-D grid: plot.png, and arrays.npz for tensors of more than 10 elements
GRID = [
    "experiment=seed_chain_rule",
    "point.x={linspace: [-2, 2, 41]}",
    "derivatives=[{target: z, sources: x}]",
    "log.max_inline_elements=10",
]
# Hydra's own callback that logs each job's return value (at INFO): the job log gets a line
LOG_RETURN = "+hydra.callbacks.log_return._target_=hydra.experimental.callbacks.LogJobReturnCallback"


def _run(args, cwd: Path, umask: int, module: str = "runner") -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=300,
        umask=umask,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _modes(folder: Path):
    """Each regular file below `folder` (hidden ones too) -> its permission bits."""
    return {str(p.relative_to(folder)): p.stat().st_mode & 0o777 for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- 1. files follow the umask -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "umask, logged", [(0o022, False), (0o077, True), (0o002, False)], ids=["umask 0022", "umask 0077", "umask 0002"]
)
def test_every_file_follows_the_umask(tmp_path, umask, logged):
    want = 0o666 & ~umask
    # a single run over a grid (results.json, arrays.npz, plot.png, events, .hydra/*) ...
    proc = _run([*GRID, *([LOG_RETURN] if logged else [])], tmp_path, umask)
    run_dir = tmp_path / re.search(r"run folder: (.*)", proc.stdout).group(1)
    # ... its rerun (.rerun/results.json) ...
    _run([str(run_dir)], tmp_path, umask, module="runner.rerun")
    run_files = _modes(run_dir)
    for name in ("results.json", "arrays.npz", "plot.png", ".hydra/config.yaml", ".rerun/results.json"):
        assert name in run_files, sorted(run_files)
    assert any(name.startswith("events.out.tfevents") for name in run_files)
    assert run_files == {name: want for name in run_files}, {k: oct(v) for k, v in run_files.items()}
    # 5a: the job log is there only when something was logged, and then not empty
    log = run_dir / "runner.log"
    assert log.exists() == logged
    if logged:
        assert "Succeeded with return value: 0" in log.read_text()

    # ... and a sweep (summary.json, summary.csv, its job folders, the runner's bookkeeping)
    _run(["-m", "point.x=1.0,2.0"], tmp_path, umask)
    (sweep_dir,) = sweep_dirs(tmp_path)
    sweep_files = _modes(sweep_dir)
    for name in ("summary.json", "summary.csv", "multirun.yaml", "0/results.json", "1/results.json"):
        assert name in sweep_files, sorted(sweep_files)
    assert sweep_files == {name: want for name in sweep_files}, {k: oct(v) for k, v in sweep_files.items()}
    assert not any(name.endswith("runner.log") for name in sweep_files)  # nothing was logged


def test_the_umask_is_read_without_changing_it():
    # what a file created now gets, against what runlog reads (from /proc on Linux)
    probe = Path(__file__).parent / ".umask-probe"
    try:
        with open(probe, "w"):
            pass
        created = probe.stat().st_mode & 0o777
    finally:
        probe.unlink()
    assert 0o666 & ~runlog.umask() == created
    assert runlog.umask() == runlog.umask()  # reading it left it as it was


# ---- 5. noise ----------------------------------------------------------------------------


def test_the_job_log_is_hydras_created_when_something_is_logged():
    """The job logging chosen is Hydra's default with the file handler's `delay` (the file
    appears at the first record: see the umask test), and a user's choice still wins."""
    from hydra import compose, initialize_config_dir

    from runner.cli import config_dir

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        ours = compose("config", return_hydra_config=True).hydra
        chosen = compose("config", overrides=["hydra/job_logging=default"], return_hydra_config=True).hydra
    assert ours.runtime.choices["hydra/job_logging"] == "runner"
    assert ours.job_logging.handlers.file.delay is True
    # otherwise Hydra's own config, as it is; a user's choice on the command line still wins
    from omegaconf import OmegaConf

    ours_plain = OmegaConf.to_container(ours.job_logging)
    del ours_plain["handlers"]["file"]["delay"]
    assert ours_plain == OmegaConf.to_container(chosen.job_logging)
    assert "delay" not in chosen.job_logging.handlers.file


_RETRACE = """
import json, sys
from pathlib import Path
from runner import job
from runner.record import runlog
from tests.helpers import function_config
out = Path(sys.argv[1])
for i in range(6):
    cfg = function_config(
        {"y": f"x * x + {i}"}, {"x": 3.0}, [{"target": "y", "sources": "x"}],
        tape={"compile": "function"}, log={"tensorboard": False, "plots": False}, verify="off",
    )
    assert job.run(cfg, out / str(i), name="t", echo=False) == 0
    rec = json.loads((out / str(i) / runlog.RESULTS_FILE).read_text())
    if any("retracing" in w for w in rec["warnings"]):
        print(out / str(i) / runlog.RESULTS_FILE)
        break
"""


def _retracing_warning(tmp_path: Path):
    """A run log holding TensorFlow's retracing warning, and the warning: six compiled
    programs in one process (a sweep over structures) make TensorFlow warn from the fifth on.
    In a process of its own: TensorFlow warns of retracing a limited number of times per
    process, and other tests' jobs may have used them up."""
    proc = subprocess.run(
        [sys.executable, "-c", _RETRACE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=command_env(),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    if not proc.stdout.strip():
        raise AssertionError("TensorFlow did not warn of retracing")
    rec = json.loads(Path(proc.stdout.strip()).read_text())
    return rec, next(w for w in rec["warnings"] if "retracing" in w)


@pytest.mark.slow
def test_a_long_warning_is_cut_at_a_sentence_not_mid_word(tmp_path):
    rec, whole = _retracing_warning(tmp_path)
    assert len(whole) > 200  # long enough that the console must cut it
    rec["warnings"] = [whole]  # this warning alone
    (line,) = [ln for ln in console.table(rec, "f").splitlines() if ln.startswith("  warning: ")]
    shown = line[len("  warning: ") :]
    assert shown.endswith(" [...]") and len(shown) <= 210
    kept = shown[: -len(" [...]")]
    assert whole.startswith(kept) and kept.endswith("retracing.")  # the first sentence, whole
    assert rec["warnings"] == [whole]  # the log keeps it all


@pytest.mark.parametrize(
    "text, limit, shown",
    [
        ("short enough", 200, "short enough"),
        ("One sentence here. Another one that goes on and on", 40, "One sentence here. [...]"),
        ("words without a sentence end that go on and on", 30, "words without a sentence end [...]"),
        ("x" * 50, 20, "x" * 20 + " [...]"),  # one long word: cut, as there is no other place
    ],
)
def test_clip_ends_at_a_sentence_or_a_word(text, limit, shown):
    assert console.clip(text, limit) == shown


def test_a_short_value_is_not_padded_to_a_long_hessians_width(run_job):
    names = ["a", "b", "c", "d"]
    point = {"a": 1.5, "b": 2.5, "c": 3.5, "d": 4.5}
    ran = run_job(
        function_config(
            {"f": "a * b * c * d"},
            point,
            [
                {"target": "f", "sources": "a"},
                {"target": "f", "sources": names, "kind": "hessian", "unconnected": "zero"},
            ],
            log={"tensorboard": False},
        )
    )
    assert ran.code == 0
    assert ran.derivatives["df/da"] == pytest.approx(2.5 * 3.5 * 4.5)
    text = console.table(ran.log, str(ran.folder))
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("  ") and " = " in ln}
    assert len(lines["hessian"]) > 200, text  # a long row ...
    # ... does not push the gradient's check out to its width
    assert re.search(r"df/da\s+= 39\.375  \[symbolic: ok", lines["gradient"]), lines["gradient"]
    assert all("   " not in ln.split(" = ", 1)[1] for ln in lines.values()), text  # no value padded


@pytest.mark.slow
def test_help_lists_only_choices_a_user_can_make(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "runner", "--help"],
        cwd=tmp_path,
        env=command_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    groups = dict(re.findall(r"^(\w+): (.*)$", proc.stdout.split("== Config ==")[0], re.M))
    shipped = {p.parent.name: sorted(q.stem for q in p.parent.glob("*.yaml")) for p in (ROOT / "conf").glob("*/*.yaml")}
    assert groups == {group: ", ".join(names) for group, names in shipped.items()}
    assert groups["tape"] == "default, persistent"


@pytest.mark.parametrize("text", ["1if x else 2", "x if 1else 2", "1x", "2 * 3y", "0x1for"])
def test_a_literal_running_into_a_name_is_a_config_error_not_a_warning(run_job, text):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(expression.ExpressionError) as err:
            expression.parse(text)
        cfg = function_config({"y": text}, {"x": 3.0}, [{"target": "y", "sources": "x"}])
        with pytest.raises(ConfigError) as refused:
            specs.build(cfg)
    assert "syntax error: invalid" in str(err.value)
    assert refused.value.key == "function.steps.y" and "syntax error" in refused.value.message
    assert [str(w.message) for w in caught] == []


# ---- 7. the environment record -----------------------------------------------------------


def test_the_environment_holds_versions_devices_and_the_build(run_job):
    import tensorflow as tf

    ran = run_job(function_config({"y": "x * x"}, {"x": 3.0}, [{"target": "y", "sources": "x"}]))
    env = ran.log["environment"]
    for name in ("sympy", "tensorboard", "matplotlib", "hydra-joblib-launcher", "hydra-submitit-launcher", "submitit"):
        try:
            want = metadata.version(name)
        except metadata.PackageNotFoundError:
            want = None
        assert env[name] == want, name
    assert [(d["name"], d["type"]) for d in env["devices"]] == [
        (d.name, d.device_type) for d in tf.config.list_physical_devices()
    ]
    build = tf.sysconfig.get_build_info()
    assert env["tensorflow_build"]["is_cuda_build"] == build["is_cuda_build"]
    assert env["tensorflow_build"].get("cuda_version") == build.get("cuda_version")
    assert set(runlog.COMPARED) <= set(env)

    # a refused config never imports TensorFlow for its record: no devices, no build
    refused = run_job(function_config({"y": "x * q"}, {"x": 3.0}, [{"target": "y", "sources": "x"}]))
    assert refused.code == 2
    assert refused.log["environment"]["devices"] is None and refused.log["environment"]["sympy"] == env["sympy"]


@pytest.mark.slow
def test_the_versions_are_read_without_importing_the_packages(tmp_path):
    probe = (
        "import sys\n"
        "from runner.record import runlog\n"
        "env = runlog.environment(None)\n"
        "print(sorted(m for m in ('sympy', 'matplotlib', 'tensorboard', 'submitit', 'tensorflow') if m in sys.modules))\n"
        "print(env['sympy'] is not None)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=command_env(), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[]", "True"]


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """A run of experiment=seed_persistent with Hydra's saved config beside its log."""
    from omegaconf import OmegaConf

    folder = tmp_path_factory.mktemp("logged") / "run"
    cfg = composed(["experiment=seed_persistent"])
    assert job.run(cfg, folder, name="seed_persistent", echo=False) == 0
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
    return folder


@pytest.mark.parametrize(
    "edit_value, code",
    [(False, 0), (True, 1)],
    ids=["numbers the same", "numbers differ"],
)
def test_rerun_names_the_environment_entries_that_differ(logged_run, tmp_path, capsys, edit_value, code):
    folder = tmp_path / "run"
    shutil.copytree(logged_run, folder)
    rec = json.loads((folder / runlog.RESULTS_FILE).read_text())
    sympy_now, cuda_now = rec["environment"]["sympy"], rec["environment"]["tensorflow_build"]["is_cuda_build"]
    rec["environment"]["sympy"] = "0.0.1"
    rec["environment"]["tensorflow_build"] = {**rec["environment"]["tensorflow_build"], "is_cuda_build": not cuda_now}
    if edit_value:
        rec["derivatives"][1]["value"] = 109.0  # dz/dx, really 108.0
    (folder / runlog.RESULTS_FILE).write_text(json.dumps(rec))

    assert rerun.main([str(folder)]) == code
    out = capsys.readouterr().out
    assert f"  note: sympy was 0.0.1, now {sympy_now}\n" in out
    was, now = json.dumps(not cuda_now), json.dumps(cuda_now)
    assert f"  note: tensorflow_build.is_cuda_build was {was}, now {now}\n" in out
    named = re.search(r"^  environment differs in: (.*)$", out, re.M)
    if edit_value:
        assert named and named.group(1) == "sympy, tensorflow_build", out
        assert out.rstrip().endswith("NOT reproduced")
    else:
        assert named is None and out.rstrip().endswith("\nreproduced")


def test_rerun_says_when_no_compared_entry_differs(logged_run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(logged_run, folder)
    rec = json.loads((folder / runlog.RESULTS_FILE).read_text())
    rec["derivatives"][1]["value"] = 109.0
    (folder / runlog.RESULTS_FILE).write_text(json.dumps(rec))
    assert rerun.main([str(folder)]) == 1
    out = capsys.readouterr().out
    assert "  environment: no compared entry differs" in out and "note: " not in out
