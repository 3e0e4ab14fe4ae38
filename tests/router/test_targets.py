"""Target expressions: which agents a queue selects, and that nothing else parses."""

import pytest

from router.targets import TargetError, compile_target

AMY = {"skills": {"billing": 3, "support": 1}, "languages": ["en", "fr"], "level": 2, "site": "leeds", "vip": True}


@pytest.mark.parametrize(
    ("expression", "selected"),
    [
        ("'billing' in skills", True),
        ("'sales' in skills", False),
        ("'sales' not in skills", True),
        ("'fr' in languages and level >= 2", True),
        ("'de' in languages or site == 'leeds'", True),
        ("not vip", False),
        ("(level > 2 or vip) and site != 'york'", True),
        ("1 <= level < 3", True),
        ("1 <= level < 2", False),
        ("site in ['leeds', 'york']", True),
        ("true", True),
        ("false", False),
        ("", True),  # an empty target selects every agent
    ],
)
def test_expressions_select_agents_by_their_attributes(expression, selected):
    assert compile_target(expression)(AMY) is selected


def test_a_missing_attribute_selects_nobody_rather_than_failing():
    assert compile_target("level >= 2")({}) is False
    assert compile_target("'billing' in skills")({}) is False
    assert compile_target("'billing' not in skills")({}) is True
    assert compile_target("team == 'night'")({}) is False


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",  # calls
        "skills.keys()",  # attribute access
        "level + 1 > 2",  # arithmetic
        "skills['billing'] > 2",  # subscripts
        "[x for x in skills]",  # comprehensions
        "lambda: 1",
        "level is None",  # identity comparisons
        "level >=",  # not even Python
    ],
)
def test_anything_outside_the_grammar_is_refused(expression):
    with pytest.raises(TargetError):
        compile_target(expression)
