"""The calculator: a `python` tool for plain arithmetic that needs no sandbox, because nothing else runs.

It accepts what GSM8K-style solutions write in a code block: `print(48/2)`, several such lines, or a bare
expression (its value is shown, as an interactive interpreter would). Numbers and + - * / // % ** and
parentheses only; anything else is refused with a ValueError naming what is not arithmetic (the tool loop
shows the model that message). Results print exactly as Python prints them (`24.0` for `48/2`).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

_OPERATORS: dict[type, Callable] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.USub: operator.neg, ast.UAdd: operator.pos,
}
MAX_EXPONENT = 100  # 10**100 is fine; 9**9**9 would take the process down


def evaluate_arithmetic(expression: str) -> int | float:
    """The value Python gives an arithmetic expression; ValueError for anything that is not plain arithmetic."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not an expression: {expression!r}") from exc
    try:
        return _value(tree.body)
    except (ZeroDivisionError, OverflowError) as exc:
        raise ValueError(f"{expression!r}: {exc}") from exc


def _value(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent {right} too large")
        return _OPERATORS[type(node.op)](left, right)
    raise ValueError(f"not plain arithmetic: {ast.unparse(node)!r}")


def calculator(code: str) -> str:
    """The tool: `print(...)` lines of arithmetic, or one bare expression, in; what Python would print out."""
    try:
        module = ast.parse(code.strip())
    except SyntaxError as exc:
        raise ValueError(f"not valid Python: {exc.msg} (line {exc.lineno})") from exc
    if not module.body:
        raise ValueError("no code to run")
    lines = []
    for statement in module.body:
        if not isinstance(statement, ast.Expr):
            raise ValueError(f"the calculator runs only print(...) of arithmetic: {ast.unparse(statement)!r}")
        lines.append(_printed(statement.value))
    return "\n".join(lines)


def _printed(node: ast.expr) -> str:
    """What one expression statement prints: a print call's arguments, or a bare expression's repr."""
    is_print = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    if not is_print:
        return repr(evaluate_arithmetic(ast.unparse(node)))
    if node.keywords:
        raise ValueError("print(...) keywords are not supported by the calculator")
    return " ".join(str(evaluate_arithmetic(ast.unparse(arg))) for arg in node.args)
