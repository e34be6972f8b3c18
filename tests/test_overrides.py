"""Command-line overrides as the record reads them: any value a user can type gives strict JSON."""

import json
import math

import pytest

from runner.config.overrides import parse_overrides
from runner.record.tensorboard_log import hyperparameters


@pytest.mark.parametrize(
    "override, parsed",
    [
        ("point.x=2.0", 2.0),
        ("point.x=1e-3", 0.001),
        ("+seed=3", 3),
        ("name=2001-02-30", "2001-02-30"),  # no calendar has it: PyYAML raises ValueError, kept as text
        ("name=[1, 2", "[1, 2"),  # YAML cannot read it: kept as text
    ],
)
def test_an_override_reads_as_yaml_or_stays_text(override, parsed):
    assert parse_overrides([override]) == {override.lstrip("+").split("=")[0]: parsed}


def test_non_finite_and_dated_hyperparameters_are_text_so_the_log_stays_strict_json():
    hp = hyperparameters(["point.x=nan", "point.y=inf", "name=2001-02-03", "point.z=-.inf"])
    assert hp == {"point.x": "nan", "point.y": "inf", "name": "2001-02-03", "point.z": "-inf"}
    json.dumps(hp, allow_nan=False)  # what runlog.write does
    assert math.isnan(parse_overrides(["point.x=nan"])["point.x"])  # the value itself is unchanged
