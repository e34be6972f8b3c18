"""Fuzzing the expression language: whatever the text, `parse` compiles it into the typed
tree or raises the language's own `ExpressionError`; it never raises anything else, never
runs code and never hangs.

"Never runs code" is checked with an audit hook (PEP 578): while `parse` runs, the only
audited event allowed is `compile` (that is `ast.parse` itself); any `exec`, `import`,
`open`, `os.system`, `subprocess.Popen`, ... would be recorded and fail the test. The set
of imported modules must not change either.
"""

from __future__ import annotations

import sys
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.language import expression as ex
from runner.language import shapes

_audit = {"on": False, "events": []}


def _hook(event: str, args: tuple) -> None:
    if _audit["on"] and event != "compile":
        _audit["events"].append(event)


sys.addaudithook(_hook)  # hooks cannot be removed; this one is idle outside `_parse_watched`


def _parse_watched(text: str):
    """parse(text) -> tree or ExpressionError, checking it ran no code and stayed fast."""
    modules = set(sys.modules)
    _audit["events"].clear()
    _audit["on"] = True
    t0 = time.perf_counter()
    try:
        result = ex.parse(text)
    except ex.ExpressionError as err:
        result = err
    finally:
        _audit["on"] = False
    assert time.perf_counter() - t0 < 2.0, f"parse took {time.perf_counter() - t0:.1f} s"
    assert _audit["events"] == [], f"parse({text!r}) raised audit events {_audit['events']}"
    assert set(sys.modules) == modules, f"parse({text!r}) imported {set(sys.modules) - modules}"
    return result


def _check_tree(tree) -> None:
    """A compiled tree holds only the typed nodes, allowlisted functions and plain numbers."""
    stack = [tree]
    while stack:
        node = stack.pop()
        assert isinstance(node, (ex.Num, ex.Name, ex.Unary, ex.Binary, ex.Compare, ex.Call)), node
        if isinstance(node, ex.Num):
            assert type(node.value) in (int, float)
        elif isinstance(node, ex.Name):
            assert node.id.isidentifier()
        elif isinstance(node, ex.Unary):
            stack.append(node.operand)
        elif isinstance(node, (ex.Binary, ex.Compare)):
            stack += [node.left, node.right]
        else:
            assert node.func in ex.FUNCTIONS
            stack += list(node.args)


FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# ---- random strings -------------------------------------------------------------------

_ALPHABET = "xyzsinpe_0123456789.+-*/%@<>=!()[]{},:;'\"` \t\n\\#&|^~lambdaforimport"


@FUZZ
@given(st.text(alphabet=_ALPHABET, max_size=120))
def test_random_text_in_the_languages_alphabet(text):
    result = _parse_watched(text)
    if not isinstance(result, ex.ExpressionError):
        _check_tree(result)


@FUZZ
@given(st.text(max_size=80))
def test_random_unicode(text):
    result = _parse_watched(text)
    if not isinstance(result, ex.ExpressionError):
        _check_tree(result)


# ---- random syntax trees --------------------------------------------------------------

_NAMES = st.sampled_from(["x", "y", "w", "pi", "e", "os", "__import__", "open", "eval", "sys", "__builtins__", "self"])
_NUMBERS = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e999", "0x1f", "1_000", "0b101", "1j", "10 ** 10 ** 10"]),
)
_HOSTILE_LEAVES = st.sampled_from(
    ["'rm -rf /'", "b'x'", "None", "True", "...", "f'{x}'", "[]", "{}", "()", "lambda: 0", "__import__('os')"]
)
_FUNCS = st.sampled_from(sorted(ex.FUNCTIONS) + ["exec", "getattr", "print", "compile"])


def _compound(children):
    binop = st.sampled_from(
        ["+", "-", "*", "/", "**", "@", "//", "%", "<", "==", " and ", " or ", " if x else ", " is ", " in "]
    )
    return st.one_of(
        st.tuples(children, binop, children).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
        st.tuples(st.sampled_from(["-", "+", "~", "not "]), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(_FUNCS, st.lists(children, max_size=4)).map(lambda t: f"{t[0]}({', '.join(t[1])})"),
        st.tuples(_FUNCS, children, st.integers(-3, 3)).map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
        st.tuples(children, st.sampled_from(["__class__", "real", "T", "numpy"])).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(children, children).map(lambda t: f"({t[0]})[{t[1]}]"),
        st.tuples(children, children).map(lambda t: f"[{t[0]} for x in {t[1]}]"),
        st.tuples(_FUNCS, children).map(lambda t: f"{t[0]}(x={t[1]})"),
    )


_ANY_TREE = st.recursive(st.one_of(_NAMES, _NUMBERS, _HOSTILE_LEAVES), _compound, max_leaves=40)


@FUZZ
@given(_ANY_TREE)
def test_random_syntax_trees_with_hostile_constructs(text):
    result = _parse_watched(text)
    if not isinstance(result, ex.ExpressionError):
        _check_tree(result)


# Trees of the language alone must always compile (unless they exceed the depth limit),
# and shape inference on them either gives a shape or refuses with the language's error.


def _valid_compound(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(["+", "-", "*", "/", "**"]), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        children.map(lambda c: f"-({c})"),
        st.tuples(st.sampled_from([f for f, s in ex.FUNCTIONS.items() if s.tensors == 1]), children).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        st.tuples(st.sampled_from(["pow", "maximum", "minimum", "atan2", "matmul"]), children, children).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
        st.tuples(children, children, children, children).map(lambda t: f"where({t[0]} < {t[1]}, {t[2]}, {t[3]})"),
        st.tuples(st.sampled_from(["reduce_sum", "reduce_max"]), children, st.integers(-2, 1)).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
    )


_VALID_TREE = st.recursive(
    st.one_of(st.sampled_from(["x", "m", "v", "pi"]), st.integers(0, 10**6).map(str)), _valid_compound, max_leaves=30
)
_SHAPES = {"x": (), "m": (2, 2), "v": (2,)}


@FUZZ
@given(_VALID_TREE)
def test_the_language_always_compiles_and_its_shapes_are_inferred_or_refused(text):
    result = _parse_watched(text)
    if isinstance(result, ex.ExpressionError):
        assert "nesting deeper" in result.message, (text, result)
        return
    _check_tree(result)
    assert set(ex.names(result)) <= {"x", "m", "v", "pi"}
    try:
        shape = shapes.infer(result, _SHAPES, text)
    except ex.ExpressionError as err:  # ShapeError is one
        assert isinstance(err, shapes.ShapeError) and err.column is not None
    else:
        assert all(isinstance(n, int) and n >= 0 for n in shape)
