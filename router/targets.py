"""Target expressions: which agents a queue selects, e.g. ``"'billing' in skills and level >= 2"``.

A small, safe subset of Python expression syntax (as TaskRouter's target
expressions): attribute names, literals, comparisons, ``in``/``not in``, ``and``,
``or``, ``not`` and parentheses. Nothing else parses, so a configuration file can
never run code. Names not present on an agent evaluate to None.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from router.errors import ContactRouterError

Predicate = Callable[[Mapping[str, Any]], bool]


class TargetError(ContactRouterError, ValueError):
    """An expression outside the supported grammar."""


_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
}


@lru_cache(maxsize=512)
def compile_target(expression: str) -> Predicate:
    """Compile an expression into a predicate over an agent's attributes."""
    text = expression.strip() or "true"
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise TargetError(f"cannot parse {expression!r}: {exc.msg}") from None
    evaluate = _compile(tree.body, expression)

    def predicate(attributes: Mapping[str, Any]) -> bool:
        try:
            return bool(evaluate(attributes))
        except TypeError:  # e.g. level >= 2 where level is missing: not selected
            return False

    return predicate


def _compile(node: ast.AST, source: str) -> Callable[[Mapping[str, Any]], Any]:
    if isinstance(node, ast.Constant):
        value = node.value
        return lambda _attrs: value
    if isinstance(node, ast.Name):
        name = node.id
        if name in ("true", "True"):
            return lambda _attrs: True
        if name in ("false", "False"):
            return lambda _attrs: False
        return lambda attrs: attrs.get(name)
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_compile(item, source) for item in node.elts]
        return lambda attrs: [item(attrs) for item in items]
    if isinstance(node, ast.BoolOp):
        parts = [_compile(value, source) for value in node.values]
        if isinstance(node.op, ast.And):
            return lambda attrs: all(part(attrs) for part in parts)
        return lambda attrs: any(part(attrs) for part in parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        operand = _compile(node.operand, source)
        return lambda attrs: not operand(attrs)
    if isinstance(node, ast.Compare):
        left = _compile(node.left, source)
        steps = []
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            if type(op) not in _COMPARE:
                raise TargetError(f"operator {type(op).__name__} is not allowed in {source!r}")
            steps.append((_COMPARE[type(op)], _compile(comparator, source)))

        def compare(attrs: Mapping[str, Any]) -> bool:
            current = left(attrs)
            for function, right in steps:
                value = right(attrs)
                if not function(current, value):
                    return False
                current = value
            return True

        return compare
    raise TargetError(f"{type(node).__name__} is not allowed in {source!r}")
