"""The one settings convention: every problem at once, the same boolean words everywhere."""

from __future__ import annotations

import pytest

from kit_settings import EnvReader, SettingsError, parse_flag


@pytest.mark.parametrize(
    ("text", "value"),
    [("1", True), ("TRUE", True), (" yes ", True), ("on", True), ("0", False), ("off", False)],
)
def test_flag_words(text: str, value: bool) -> None:
    assert parse_flag(text) is value


@pytest.mark.parametrize("text", ["maybe", "2", "", "enabled"])
def test_other_words_are_not_flags(text: str) -> None:
    assert parse_flag(text) is None


def test_every_problem_is_reported_one_per_line() -> None:
    env = EnvReader({"A": "maybe", "B": "x", "C": "70000", "D": "nan", "E": "purple"})
    assert env.flag("A", default=True) is True  # the default stands in, the problem is noted
    assert env.number("B", 3, 1, 10) == 3
    assert env.number("C", 8888, 1, 65535) == 8888
    assert env.number("D", 0.5, 0.1, 5.0) == 0.5
    assert env.choice("E", "api", ("api", "token")) == "api"
    with pytest.raises(SettingsError) as caught:
        env.check()
    problems = caught.value.problems
    assert [line.split("=")[0] for line in problems] == ["A", "B", "C", "D", "E"]
    assert str(caught.value) == "\n".join(problems)


def test_unset_and_blank_values_take_the_default() -> None:
    env = EnvReader({"BLANK": "  ", "LIST": " a, ,b "})
    assert env.text("BLANK", "d") == "d" and env.text("UNSET", "d") == "d"
    assert env.flag("UNSET") is False and env.number("UNSET", 2.5, 0, 5) == 2.5
    assert env.names("LIST") == ("a", "b")
    env.check()  # nothing wrong: no raise
