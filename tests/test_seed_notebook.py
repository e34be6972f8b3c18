"""The founding notebook's four examples, from the shipped configs alone."""

import pytest

SEED = [
    # experiment, values, derivatives, error (type, failed request), exit code
    ("seed_cubic", {"x": 5.0, "y": 125.0}, {"dy/dx": 75.0}, None, 0),
    ("seed_chain_rule", {"x": 3.0, "y": 9.0, "z": 81.0}, {"dz/dx": 108.0}, None, 0),
    ("seed_non_persistent", {"x": 3.0, "y": 9.0, "z": 81.0}, {"dy/dx": 6.0}, ("RuntimeError", "dz/dx"), 0),
    ("seed_persistent", {"x": 3.0, "y": 9.0, "z": 81.0}, {"dy/dx": 6.0, "dz/dx": 108.0}, None, 0),
]


@pytest.mark.parametrize("experiment, values, derivatives, error, code", SEED, ids=[s[0] for s in SEED])
def test_seed_experiment(run_job, experiment, values, derivatives, error, code):
    ran = run_job([f"experiment={experiment}"], name=experiment)
    assert ran.code == code
    assert ran.values == values
    assert ran.derivatives == derivatives
    if error is None:
        assert ran.log["status"] == "ok" and ran.log["error"] is None
    else:
        assert ran.log["status"] == "error"
        assert (ran.log["error"]["type"], ran.log["error"]["derivative"]) == error
        assert "non-persistent" in ran.log["error"]["message"]
    assert ran.log["expect"]["met"] is True


def test_default_experiment_is_seed_cubic(run_job):
    ran = run_job([])
    assert ran.derivatives == {"dy/dx": 75.0}


def test_undeclared_error_fails_the_run(run_job):
    ran = run_job(["experiment=seed_non_persistent", "expect.error=null"])
    assert ran.code == 1
    assert ran.log["expect"]["met"] is False
    assert ran.log["expect"]["mismatches"] == ["unexpected RuntimeError"]
    assert ran.derivatives == {"dy/dx": 6.0}  # the request before the failure keeps its value


def test_declared_error_that_does_not_happen_fails_the_run(run_job):
    ran = run_job(["experiment=seed_non_persistent", "tape.persistent=true"])
    assert ran.code == 1
    assert ran.log["status"] == "ok"
    assert ran.log["expect"]["mismatches"] == ["expected RuntimeError, got no error"]


def test_experiment_is_complete_in_itself(run_job):
    # seed_cubic is the default; choosing another experiment must not leak its step y = x**3
    ran = run_job(["experiment=seed_chain_rule"])
    assert ran.values["y"] == 9.0
    assert list(ran.values) == ["x", "y", "z"]


def test_groups_compose_on_the_command_line(run_job):
    # seed_cubic's request dy/dx, on the chain_rule function: d(x*x)/dx at 5 = 10
    ran = run_job(["function=chain_rule"])
    assert ran.derivatives == {"dy/dx": 10.0}
    assert ran.values == {"x": 5.0, "y": 25.0, "z": 625.0}


def test_expect_can_be_declared_from_the_command_line(run_job):
    assert run_job(["experiment=seed_cubic", "expect.checks=pass"]).code == 0
    ran = run_job(["experiment=seed_cubic", "expect.error=RuntimeError"])
    assert ran.code == 1
    assert ran.log["expect"]["mismatches"] == ["expected RuntimeError, got no error"]
