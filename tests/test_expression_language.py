"""The expression language: what parses, what it means, and what is refused."""

import pytest

from runner import expression as ex

VALID = [
    # text, the names it uses
    ("x * x", {"x"}),
    ("x ** 3", {"x"}),
    ("-x + 2.5", {"x"}),
    ("sin(x) ** 2 + cos(x) ** 2", {"x"}),
    ("reduce_sum(w @ x, 0)", {"w", "x"}),
    ("reduce_mean(x, -1)", {"x"}),
    ("where(x > 0, x, 0.0)", {"x"}),
    ("pow(x, 2) / (1 + exp(-y))", {"x", "y"}),
    ("pi * r ** 2", {"r", "pi"}),
    ("10 ** 10 ** 10 ** 10", set()),
]


@pytest.mark.parametrize("text, used", VALID, ids=[v[0] for v in VALID])
def test_valid_expressions_parse(text, used):
    assert set(ex.names(ex.parse(text))) == used


def test_tree_shape_follows_python_precedence():
    tree = ex.parse("-x ** 2 + y * z")
    assert isinstance(tree, ex.Binary) and tree.op == "+"
    assert isinstance(tree.left, ex.Unary) and isinstance(tree.left.operand, ex.Binary)
    assert tree.left.operand.op == "**"
    assert tree.right.op == "*"


HOSTILE = [
    # text, a phrase the message must contain, the column it must point at (None: any)
    ("__import__('os').system('true')", "only calls of allowlisted functions", 1),
    ("__import__('os')", "unknown function '__import__'", 1),
    ("sin('x')", "string literals", 5),
    ("x.numpy()", "only calls of allowlisted functions", 1),
    ("x.__class__", "attribute access", 1),
    ("open('/etc/passwd')", "unknown function 'open'", 1),
    ("eval('1')", "unknown function 'eval'", 1),
    ("exec", None, None),  # a bare name parses; spec.py refuses it as an unknown name
    ("(lambda: 1)()", "only calls of allowlisted functions", 1),
    ("[i for i in x]", "comprehensions", 1),
    ("x[0]", "subscripts", 1),
    ("x if y else z", "conditional expressions", 1),
    ("x // 2", "operator '//'", 1),
    ("x % 2", "operator '%'", 1),
    ("sin(x=1)", "keyword arguments", 7),
    ("sin(x, y)", "sin takes sin(t)", 1),
    ("reduce_sum(x, y)", "axis of reduce_sum must be an integer literal", 15),
    ("x +", "syntax error", None),
    ("", "empty expression", None),
    ("1 < x < 2", "chained comparisons", 1),
    ("True", "literal True", 1),
    ("x and y", "'and'/'or'", 1),
    ("(" * 100 + "x" + ")" * 100, "nesting deeper than 64", 65),
    ("x + " * 700 + "x", "limit is 2000", None),
]


@pytest.mark.parametrize("text, phrase, column", HOSTILE, ids=[h[0][:30] for h in HOSTILE])
def test_hostile_expressions_are_refused_with_their_column(text, phrase, column):
    if phrase is None:
        assert ex.names(ex.parse(text)) == {text: 1}
        return
    with pytest.raises(ex.ExpressionError) as info:
        ex.parse(text)
    assert phrase in str(info.value)
    if column is not None:
        assert info.value.column == column


def test_pointer_marks_the_column():
    with pytest.raises(ex.ExpressionError) as info:
        ex.parse("x + y.z")
    assert info.value.pointer() == "x + y.z\n    ^"


def test_deep_nesting_without_brackets_is_bounded():
    # unary minus chains nest without brackets; the tree depth limit still applies
    with pytest.raises(ex.ExpressionError, match="nesting deeper"):
        ex.parse("-" * 200 + "x")
