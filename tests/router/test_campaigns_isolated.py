"""Campaign templates run in a bounded child process: a runaway template (a macro that
calls itself twice per level, `~` doubling a string) is stopped with a problem that names
the campaign, the next message renders as usual, and the caller's event loop runs on."""

from __future__ import annotations

import asyncio

import pytest

from router.campaigns.isolated import IsolatedRenderer
from router.campaigns.render import TemplateProblem
from tests.workers.test_campaign_render import campaign, person

# 2**40 macro calls, each writing nothing: no output limit is ever reached
EXPONENTIAL = "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"
# a string doubled 40 times (a terabyte) inside a macro, out of the output stream's sight
DOUBLING = (
    "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}"
    "{{ d('x', 40) }}"
)


@pytest.fixture
async def renderer():
    isolated = IsolatedRenderer(timeout_s=1.0, memory_bytes=128 * 1024 * 1024)
    yield isolated
    isolated.close()


async def test_a_template_that_runs_for_ever_is_stopped_and_the_next_message_renders(renderer) -> None:
    with pytest.raises(TemplateProblem, match="campaign c1: the template took longer than 1 s; rendering stopped"):
        await renderer.render(campaign(sms=EXPONENTIAL), "sms", person(name="Jane"))
    assert (await renderer.render(campaign(), "sms", person(name="Jane"))).body == "Hi Jane"


async def test_a_template_that_swells_is_stopped_by_the_memory_limit() -> None:
    # time enough, on a loaded machine, for the memory limit to be what stops it
    renderer = IsolatedRenderer(timeout_s=30.0, memory_bytes=128 * 1024 * 1024)
    try:
        with pytest.raises(TemplateProblem, match="more memory than a message may use"):
            await renderer.render(campaign(sms=DOUBLING), "sms", person(name="Jane"))
        assert (await renderer.render(campaign(), "sms", person(name="Tom"))).body == "Hi Tom"
    finally:
        renderer.close()


async def test_the_callers_event_loop_runs_while_a_runaway_template_is_rendered(renderer) -> None:
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(heartbeat())
    with pytest.raises(TemplateProblem):
        await renderer.render(campaign(sms=EXPONENTIAL), "sms", person(name="Jane"))
    beat.cancel()
    assert ticks > 10  # the loop kept serving others (it would be 1 had the render held it)


async def test_template_errors_still_name_the_template_and_line(renderer) -> None:
    with pytest.raises(TemplateProblem, match="template sms/en, line 1: 'balance' is undefined"):
        await renderer.render(campaign(sms="Hi {{ balance }}"), "sms", person(name="Jane"))
