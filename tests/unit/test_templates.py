"""`${...}` templates: typed single values, formatted embedded values, escapes, references."""

import pytest

from engine.templates import TemplateError, compile_value, truthy

CTX = {
    "params": {"days": 14, "name": "press", "tags": ["a", "b"], "nothing": None, "flag": False},
    "steps": {"plan": {"summary": {"jobs": 3}}},
    "run": {"id": 7},
    "task": {},
    "event": None,
    "now": "2026-03-29T08:00:00+03:00",
}


def render(value):
    renderer, _ = compile_value(value)
    return renderer(CTX)


def test_a_string_that_is_one_template_yields_the_typed_value():
    assert render("${params.days}") == 14
    assert render("${params.tags}") == ["a", "b"]
    assert render("${steps.plan.summary}") == {"jobs": 3}
    assert render("${params.nothing}") is None


def test_embedded_templates_are_formatted_into_text():
    assert render("run ${run.id} for ${params.name}: ${params.tags}") == 'run 7 for press: ["a","b"]'
    assert render("flag=${params.flag}, none=[${params.nothing}]") == "flag=false, none=[]"


def test_templates_inside_objects_and_lists_are_rendered_in_place():
    assert render({"a": ["${params.days}", "x${run.id}"], "b": {"c": "${params.flag}"}}) == {
        "a": [14, "x7"],
        "b": {"c": False},
    }


def test_constant_values_come_back_unchanged():
    value = {"a": [1, 2, {"b": "plain"}]}
    assert render(value) is value


def test_double_dollar_escapes_a_literal_template():
    assert render("cost: $${params.days}") == "cost: ${params.days}"


def test_braces_and_quotes_inside_an_expression_do_not_end_the_template():
    assert render("${ {d: params.days, s: 'a}b'} }") == {"d": 14, "s": "a}b"}


def test_references_name_the_context_roots_and_steps_read():
    _, refs = compile_value({"x": "${steps.plan.summary.jobs}", "y": "${length(params.tags)} ${now}"})
    assert {(r.root, r.key) for r in refs} == {("steps", "plan"), ("params", "tags"), ("now", None)}


def test_expressions_inside_projections_are_not_read_from_the_root():
    _, refs = compile_value("${params.tags[?@ == 'a'] | [0]}")
    assert {(r.root, r.key) for r in refs} == {("params", "tags")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${params.days", "unclosed template"),
        ("${}", "empty template"),
        ("${params.[}", "invalid expression"),
    ],
)
def test_malformed_templates_are_reported_with_their_path(text, message):
    with pytest.raises(TemplateError, match=message) as info:
        compile_value({"with": {"x": text}})
    assert info.value.path == ("with", "x")


def test_truthiness_follows_jmespath():
    assert [truthy(v) for v in (None, False, "", [], {}, 0, "0", [0], True)] == [
        False,
        False,
        False,
        False,
        False,
        True,
        True,
        True,
        True,
    ]
