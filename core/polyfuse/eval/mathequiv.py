r"""MATH-style answer equivalence: ``\frac{1}{2}`` = ``0.5`` = ``1/2``, ``\dfrac12`` = ``\frac{1}{2}``,
``x = 3`` = ``3``, ``90^\circ`` = ``90``, ``(1, 2)`` = ``(1,2)``, ``2\sqrt{2}`` = ``\sqrt{8}``.

Why not sympy's ``parse_latex``: it needs the ANTLR runtime at an exact version, which does not
install cleanly next to other packages; MATH answers are short, so a careful normaliser
(the same steps as the MATH paper's ``is_equiv`` plus a few more) and a safe numeric evaluation
of what remains (Python's ``ast`` with arithmetic, ``sqrt`` and ``pi`` only) decide equivalence.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable

__all__ = ["math_equal", "normalise_latex"]

_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox|mathbf)\{([^{}]*)\}")
_UNIT_WORDS = re.compile(
    r"\s*(?:units?|degrees?|cm|m|km|inches|inch|feet|ft|meters?|dollars?|cents?|hours?|"
    r"minutes?|seconds?|days?|sq|square)\b\.?(?:\^\{?\d\}?)?",
    re.IGNORECASE,
)


def _fix_fracs(text: str) -> str:
    r"""``\frac12`` → ``\frac{1}{2}``, ``\frac1{2}`` → ``\frac{1}{2}``."""
    parts = text.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part.startswith("{") or len(part) < 2:
            out += part
            continue
        a, rest = part[0], part[1:]
        if rest.startswith("{"):
            out += "{" + a + "}" + rest
        else:
            out += "{" + a + "}{" + rest[0] + "}" + rest[1:]
    return out


def _fix_sqrt(text: str) -> str:
    r"""``\sqrt3`` → ``\sqrt{3}``."""
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", text)


def normalise_latex(answer: str) -> str:
    """A canonical string form of a MATH answer (spacing, macros, units, ``x =`` removed)."""
    text = answer.strip().replace("\n", "").rstrip(".")
    text = text.replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    text = text.replace("\\left", "").replace("\\right", "")
    text = text.replace("dfrac", "frac").replace("tfrac", "frac")
    text = text.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\circ", "")
    text = text.replace("\\%", "").replace("%", "").replace("\\$", "").replace("$", "")
    text = _TEXT.sub(r"\1", text)
    text = _UNIT_WORDS.sub("", text)
    text = re.sub(r"^[a-zA-Z]\s*=\s*", "", text)  # "x = 3" → "3"
    text = text.replace(" ", "")
    text = _fix_sqrt(_fix_fracs(text))
    if text.startswith("."):
        text = "0" + text
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text)  # 1,000 → 1000
    return text


_BIN: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
            raise ValueError("exponent too large")
        return _BIN[type(node.op)](left, right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
        if node.func.id == "sqrt":
            return math.sqrt(_evaluate(node.args[0]))
    if isinstance(node, ast.Name) and node.id == "pi":
        return math.pi
    raise ValueError("not arithmetic")


def _to_python(text: str) -> str:
    expr = text
    for _ in range(8):  # nested fractions and roots, innermost first
        new = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", expr)
        new = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", new)
        if new == expr:
            break
        expr = new
    expr = expr.replace("\\pi", "pi").replace("\\cdot", "*").replace("\\times", "*")
    expr = expr.replace("^", "**").replace("{", "(").replace("}", ")")
    # Implicit products: 2sqrt(2), 2pi, 3(4), )( .
    expr = re.sub(r"(\d|\))\s*(?=sqrt|pi|\()", r"\1*", expr)
    return expr


def _numeric(text: str) -> float | None:
    expr = _to_python(text)
    if not expr or len(expr) > 200 or "\\" in expr:
        return None
    try:
        value = _evaluate(ast.parse(expr, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None
    return value if math.isfinite(value) else None


def _split_tuple(text: str) -> list[str] | None:
    if len(text) >= 2 and text[0] in "([" and text[-1] in ")]":
        inner = text[1:-1]
        depth, parts, current = 0, [], ""
        for char in inner:
            if char in "({[":
                depth += 1
            elif char in ")}]":
                depth -= 1
            if char == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += char
        parts.append(current)
        return parts if len(parts) > 1 else None
    return None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def math_equal(answer: str | None, gold: str, *, _depth: int = 0) -> bool:
    """Whether ``answer`` states the same value as ``gold`` (after normalisation).

    Tuples and intervals compare element by element (same brackets for intervals).
    """
    if answer is None:
        return False
    a, g = normalise_latex(answer), normalise_latex(gold)
    if a == g:
        return True
    if _depth < 2:
        a_parts, g_parts = _split_tuple(a), _split_tuple(g)
        if a_parts is not None and g_parts is not None:
            if len(a_parts) != len(g_parts) or (a[0] + a[-1]) != (g[0] + g[-1]):
                return False
            return all(
                math_equal(x, y, _depth=_depth + 1) for x, y in zip(a_parts, g_parts, strict=True)
            )
    if "," in g and "," in a and _split_tuple(g) is None:  # unordered lists: "1, 2" = "2,1"
        return sorted(a.split(",")) == sorted(g.split(","))
    a_value, g_value = _numeric(a), _numeric(g)
    return a_value is not None and g_value is not None and _close(a_value, g_value)
