"""The calculator tool: what Python prints for arithmetic, a clear refusal for anything else."""

from __future__ import annotations

import pytest

from fineforge.model.tools.calculator import calculator


def test_prints_what_python_prints():
    assert calculator("print(48/2)") == "24.0"
    assert calculator("print(2**10)\nprint(7 // 2, 7 % 4)") == "1024\n3 3"
    assert calculator("(1.5 + .5) * -3") == "-6.0"  # a bare expression shows its value
    assert calculator("print(1,200)") == "1 200"  # as Python would: two arguments


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("import os", "runs only print(...) of arithmetic"),
        ("x = 3", "runs only print(...) of arithmetic"),
        ("print(open('/etc/passwd').read())", "not plain arithmetic"),
        ("print(__import__('os'))", "not plain arithmetic"),
        ("print(9**9**9)", "exponent 387420489 too large"),
        ("print(1/0)", "division by zero"),
        ("print(2, end='')", "keywords are not supported"),
        ("print(48/2", "not valid Python"),
        ("  ", "no code to run"),
    ],
)
def test_refuses_anything_but_arithmetic(code, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        calculator(code)
