"""The expression language itself: what parses, into what, and what is refused, where."""

from __future__ import annotations

import json
import time

import pytest

from runner.language import expression as ex
from tests.helpers import cli, function_config

VALID = [
    # text, the tree it must give
    ("x", ex.Name("x", 1)),
    ("2.5", ex.Num(2.5, 1)),
    ("-x", ex.Unary("-", ex.Name("x", 2), 1)),
    ("x * y", ex.Binary("*", ex.Name("x", 1), ex.Name("y", 5), 1)),
    ("x ** 3", ex.Binary("**", ex.Name("x", 1), ex.Num(3, 6), 1)),
    ("a @ b", ex.Binary("@", ex.Name("a", 1), ex.Name("b", 5), 1)),
    ("sin(x)", ex.Call("sin", (ex.Name("x", 5),), None, 1)),
    ("reduce_sum(x, -1)", ex.Call("reduce_sum", (ex.Name("x", 12),), -1, 1)),
    (
        "where(x < 0, -x, x)",
        ex.Call(
            "where",
            (ex.Compare("<", ex.Name("x", 7), ex.Num(0, 11), 7), ex.Unary("-", ex.Name("x", 15), 14), ex.Name("x", 18)),
            None,
            1,
        ),
    ),
    ("  x  ", ex.Name("x", 1)),  # surrounding blanks are not part of the expression
    ("pi * e", ex.Binary("*", ex.Name("pi", 1), ex.Name("e", 6), 1)),
    ("1e999", ex.Num(float("inf"), 1)),  # a float literal may overflow to inf, as in TensorFlow
]


@pytest.mark.parametrize("text, tree", VALID, ids=[v[0].strip() for v in VALID])
def test_parses_into_the_typed_tree(text, tree):
    assert ex.parse(text) == tree


def test_names_lists_every_name_with_its_first_column():
    assert ex.names(ex.parse("y * sin(x) + x * pi")) == {"y": 1, "x": 9, "pi": 18}


HOSTILE = [
    # text, what the error must say, its column (None: no column)
    ("__import__('os').system('ls')", "calling an attribute (a method) is not allowed", 1),
    ("open('/etc/passwd')", "unknown function 'open'", 1),
    ("eval('1')", "unknown function 'eval'", 1),
    ("x.__class__", "attribute access not allowed", 1),
    ("sin.__globals__", "attribute access not allowed", 1),
    ("lambda: x", "lambdas not allowed", 1),
    ("(lambda: 1)()", "only allowlisted functions can be called, by name; calling a lambda is not allowed", 1),
    ("sin(x)(x)", "calling the result of a call is not allowed", 1),
    ("[x for x in y]", "comprehensions not allowed", 1),
    ("(x for x in y)", "comprehensions not allowed", 1),
    ("'text'", "string literals are not allowed", 1),
    ("x + b'bytes'", "string literals are not allowed", 5),
    ("f'{x}'", "f-strings not allowed", 1),
    ("x[0]", "subscripts not allowed", 1),
    ("x[0:2]", "subscripts not allowed", 1),
    ("(x := 1)", "assignment expressions not allowed", 2),
    ("x if y else z", "conditional expressions", 1),
    ("x and y", "'and'/'or'", 1),
    ("not x", "operator 'not' is not allowed", 1),
    ("x // y", "operator '//' is not allowed", 1),
    ("x % y", "operator '%' is not allowed", 1),
    ("x < y < z", "chained comparisons are not allowed", 1),
    ("x is y", "comparison 'is' is not allowed", 1),
    ("x in y", "comparison 'in' is not allowed", 1),
    ("sin(x=1)", "keyword arguments are not allowed", 7),
    ("sin(*x)", "starred arguments not allowed", 5),
    ("sin(x, y)", "sin takes sin(t), got 2 argument(s)", 1),
    ("reduce_sum(x, y)", "the axis of reduce_sum must be an integer literal", 15),
    ("reduce_sum(x, 1.5)", "the axis of reduce_sum must be an integer literal", 15),
    ("None", "the literal None is not allowed", 1),
    ("True", "the literal True is not allowed", 1),
    ("1j", "the literal 1j is not allowed", 1),
    ("...", "the literal Ellipsis is not allowed", 1),
    ("[1, 2]", "list literals", 1),
    ("{}", "dict literals not allowed", 1),
    ("x, y", "tuples not allowed", 1),
    ("x = 1", "syntax error", 3),
    ("import os", "syntax error", 1),
    ("x; y", "syntax error", 2),
    ("x * (", "syntax error", None),
    ("\x00", "syntax error", None),
    ("", "empty expression", None),
    ("   ", "empty expression", None),
    ("9" * 400, "is too large for any float type", 1),
]


@pytest.mark.parametrize("text, message, column", HOSTILE, ids=[h[0][:30] or "empty" for h in HOSTILE])
def test_refuses_what_is_not_in_the_language(text, message, column):
    with pytest.raises(ex.ExpressionError) as info:
        ex.parse(text)
    assert message in info.value.message
    if column is not None:
        assert info.value.column == column
    assert "\n" not in str(info.value)  # one line


def test_refuses_non_strings():
    with pytest.raises(ex.ExpressionError, match="must be a string, not list"):
        ex.parse(["x"])


def test_the_pointer_puts_a_caret_under_the_fault():
    with pytest.raises(ex.ExpressionError) as info:
        ex.parse("x + y.z")
    assert info.value.pointer() == "x + y.z\n    ^"


# ---- bounded work -----------------------------------------------------------------------

LIMITS = [
    # text, the message; each must be refused quickly, none may crash the parser
    ("x + " * 600 + "x", "expression is 2401 characters long; the limit is 2000"),
    ("(" * 65 + "x" + ")" * 65, "brackets nested deeper than 64 levels"),
    ("(" * 999 + "x" + ")" * 999, "brackets nested deeper than 64 levels"),  # Python's parser stops at 200
    ("[" * 300, "brackets nested deeper than 64 levels"),
    ("sin(" * 100 + "x" + ")" * 100, "brackets nested deeper than 64 levels"),
    ("-" * 1990 + "x", "nesting deeper than 64 levels"),  # no brackets, still deep
    ("x" + " ** x" * 300, "nesting deeper than 64 levels"),
    ("+".join(["x"] * 70), "nesting deeper than 64 levels (each operation of a chain"),
]


@pytest.mark.parametrize("text, message", LIMITS, ids=[f"{t[:12]}..x{len(t)}" for t, _ in LIMITS])
def test_length_and_depth_are_bounded(text, message):
    t0 = time.perf_counter()
    with pytest.raises(ex.ExpressionError) as info:
        ex.parse(text)
    assert message in str(info.value)
    assert time.perf_counter() - t0 < 1.0  # a bound, not a benchmark: it must not crawl


def test_the_limits_themselves_are_allowed():
    ex.parse("+".join(["x"] * 64))  # a chain of 64 operations is 64 levels
    ex.parse("(" * 64 + "x" + ")" * 64)
    ex.parse("x" * ex.MAX_LENGTH)  # one long name, exactly at the length limit


# Numbers are only ever combined by TensorFlow, on tensors: Python never computes the
# literal 10 ** 10 ** 10 ** 10 (which would not finish), TensorFlow gives inf at once.
HUGE = [
    ("10 ** 10 ** 10 ** 10 * x", "Infinity"),
    ("9 ** 9 ** 9 ** 9 ** 9 - x", "Infinity"),
    ("(10 ** 10) ** (10 ** 10) + 0 * x", "Infinity"),
    ("-(10 ** 400) + x", "-Infinity"),
]


@pytest.mark.slow
def test_huge_powers_run_in_tensorflow_not_in_python(tmp_path):
    steps = [f"+function.steps.h{i}='{text}'" for i, (text, _) in enumerate(HUGE)]
    result = cli(["point.x=1.0", "derivatives=[]", *steps], cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr

    (log,) = list(tmp_path.glob("outputs/*/*/results.json"))
    values = json.loads(log.read_text())["values"]
    assert [values[f"h{i}"] for i in range(len(HUGE))] == [want for _, want in HUGE]


def test_an_integer_literal_is_refused_exactly_when_no_float_holds_it():
    """2**1024 - 1 has 1024 bits, as the largest float has, yet rounds up past it."""
    largest = 2**1024 - 2**970 - 1  # rounds down to the largest float64
    assert ex.parse(f"x * {largest}") == ex.Binary("*", ex.Name("x", 1), ex.Num(largest, 5), 1)
    for too_big in (largest + 1, 2**1024 - 1, 2**1024, -(2**1024 - 1)):
        with pytest.raises(ex.ExpressionError) as info:
            ex.parse(f"x * {too_big}")
        assert info.value.message.startswith("the number 179769313486... (309 digits) is too large for any float type")


# A literal takes the type of what it meets. Beyond that type's range TensorFlow fails (int64, and
# any int beyond int64 for bfloat16) or wraps it around silently (int32): 3 + 2**31 gave -2147483645.
LITERAL_TYPES = [
    # input dtype, step, the value or the error's message
    ("bfloat16", "x * 18446744073709551616", 5.5340232221128655e19),  # 2**64, read as a float
    ("float64", f"{2**1024 - 2**970 - 1} / (x * 1e308)", 1.7976931348623157e308 / 3e308),
    ("int32", "x + 2147483648", "the number 2147483648 does not fit int32, the type it meets here"),
    ("int32", "x * 9223372036854775807", "the number 9223372036854775807 does not fit int32"),
    ("int64", "x + 2147483648", 2147483651),
    ("int64", "x * 18446744073709551616", "the number 18446744073709551616 does not fit int64"),
]


@pytest.mark.slow
@pytest.mark.parametrize("dtype, step, want", LITERAL_TYPES, ids=[f"{d} {s[:24]}" for d, s, _ in LITERAL_TYPES])
def test_a_literal_beyond_the_type_it_meets_is_never_wrapped_around(run_job, dtype, step, want):
    ran = run_job(function_config({"y": step}, {"x": 3}, [], inputs={"x": {"dtype": dtype}}))
    if isinstance(want, str):
        assert ran.log["status"] == "error" and want in ran.log["error"]["message"], ran.log["error"]
        assert "y" not in ran.values
    else:
        assert ran.log["status"] == "ok", ran.log["error"]
        assert ran.values["y"] == pytest.approx(want, rel=1e-2)


def test_a_long_expression_is_shown_around_its_fault_only():
    """An error's detail shows 80 characters around the caret, not a 2,000-character line."""
    from runner.language.expression import ExpressionError

    text = "x + " * 450 + "q"
    err = ExpressionError("unknown name 'q'", text, len(text))
    line, caret = err.pointer().splitlines()
    assert line == "..." + text[-80:] and len(line) == 83
    assert caret == " " * 82 + "^"
    assert ExpressionError("m", "x+q", 3).pointer() == "x+q\n  ^"
