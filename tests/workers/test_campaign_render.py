"""Campaign templates: sandboxed, errors that name the template line, opt-out text, preview."""

import pytest

from router.campaigns.isolated import shared
from router.campaigns.model import CampaignError, Recipient, parse_campaign
from router.campaigns.render import Rendered, Renderer, TemplateProblem


def campaign(kind: str = "cross_sell", sms: str = "Hi {{ name }}", **extra: str):
    lines = [f'{k} = "{v}"' for k, v in extra.items()]
    return parse_campaign(
        f"""
id = "c1"
tenant = "acme"
kind = "{kind}"
channel = "sms"
fallback_channel = "email"
queue = "support"
{chr(10).join(lines)}
[templates.sms.en]
body = '''{sms}'''
[templates.sms.es]
body = "Hola {{{{ name }}}}"
[templates.email.en]
subject = "For {{{{ name }}}}"
body = "Dear {{{{ name }}}}, you owe {{{{ balance }}}}."
"""
    )


def person(**fields: str) -> Recipient:
    return Recipient(seq=1, line=2, phone="+12125551234", email="j@example.com", fields=fields)


def test_a_missing_field_names_the_template_and_its_line():
    renderer = Renderer(campaign(sms="Hello {{ name }},\nyou owe {{ balance }}\nThanks"))
    with pytest.raises(TemplateProblem, match=r"template sms/en, line 2: 'balance' is undefined"):
        renderer.render("sms", person(name="Jane"))


def test_a_syntax_error_is_reported_when_the_campaign_is_made_with_its_line():
    with pytest.raises(TemplateProblem, match=r"template sms/en, line 3"):
        Renderer(campaign(sms="one\ntwo\n{% if name %}never closed"))


def test_templates_cannot_reach_past_the_sandbox():
    renderer = Renderer(campaign(sms="{{ name.__class__.__mro__ }}"))
    with pytest.raises(TemplateProblem, match="line 1"):
        renderer.render("sms", person(name="Jane"))
    with pytest.raises(TemplateProblem, match="range"):
        Renderer(campaign(sms="{% for i in range(10**9) %}x{% endfor %}")).render("sms", person())


def test_the_recipients_locale_picks_the_template_else_the_default():
    renderer = Renderer(campaign())
    es = Recipient(seq=1, line=2, phone="+34600123456", locale="es-MX", fields={"name": "Ana"})
    fr = Recipient(seq=2, line=3, phone="+33612345678", locale="fr", fields={"name": "Luc"})
    assert renderer.render("sms", es).body == "Hola Ana"
    assert renderer.render("sms", fr).body == "Hi Luc"


def test_collections_texts_always_say_how_to_opt_out():
    renderer = Renderer(campaign(kind="collections"))
    assert renderer.render("sms", person(name="Jane")).body == "Hi Jane Reply STOP to opt out."
    told = Renderer(campaign(kind="collections", sms="Hi {{ name }}. Text STOP to end these."))
    assert told.render("sms", person(name="Jane")).body == "Hi Jane. Text STOP to end these."
    marketing = Renderer(campaign(kind="cross_sell"))
    assert marketing.render("sms", person(name="Jane")).body == "Hi Jane"


@pytest.mark.parametrize(
    "text",
    [
        "Hi Christopher, your balance is due",  # a name with "stop" in it
        "Our non-stop service: your balance is due",
        "Your payments stopped in May",
        "Please don't stop paying",
    ],
)
def test_a_word_containing_stop_is_no_opt_out_notice_so_the_engine_adds_one(text):
    renderer = Renderer(campaign(kind="collections", sms=text))
    assert renderer.render("sms", person(name="Jane")).body == f"{text} Reply STOP to opt out."


@pytest.mark.parametrize(
    "text",
    [
        "Balance due. Reply STOP to opt out.",
        "Balance due. reply stop to end these",
        "Balance due. Text \u201cSTOP\u201d to cancel.",
        "Balance due. STOP to opt-out",
        "Balance due. Send UNSUBSCRIBE to stop these texts.",
        "Balance due.   reply   STOP   TO OPT OUT.",
    ],
)
def test_a_text_that_tells_how_to_opt_out_gets_no_second_notice(text):
    renderer = Renderer(campaign(kind="collections", sms=text))
    assert renderer.render("sms", person(name="Jane")).body == text


def test_collections_email_carries_the_unsubscribe_link():
    renderer = Renderer(campaign(kind="collections"))
    message = renderer.render("email", person(name="Jane", balance="$10"), {"unsubscribe_url": "https://x/u/1"})
    assert message.subject == "For Jane"
    assert message.body.startswith("Dear Jane, you owe $10.")
    assert "https://x/u/1" in message.body


async def test_preview_shows_each_recipients_message_or_the_error_it_hits():
    rows = await shared().preview(
        campaign(sms="Hi {{ name }}, {{ balance }} due"),
        [person(name="Jane", balance="$5"), person(name="Tom")],
    )
    assert rows[0][2].body == "Hi Jane, $5 due"
    assert rows[1][2] == "template sms/en, line 1: 'balance' is undefined"


def test_variant_shares_must_add_up_to_100_and_a_variant_renders_its_own_template():
    base = campaign()
    text_ab = """
id = "c1"
tenant = "acme"
kind = "notice"
channel = "sms"
queue = "support"
[templates.sms.en]
body = "Plain {{ name }}"
[[variants]]
name = "short"
share = {share}
[variants.templates.sms.en]
body = "Hey {{ name }}!"
[[variants]]
name = "plain"
share = 40
"""
    with pytest.raises(CampaignError, match="add up to 100"):
        parse_campaign(text_ab.replace("{share}", "50"))
    ab = parse_campaign(text_ab.replace("{share}", "60"))
    renderer = Renderer(ab)
    bodies = {
        ab.variant_of(seq): renderer.render("sms", Recipient(seq=seq, line=seq + 1, fields={"name": "Jo"})).body
        for seq in range(1, 50)
    }
    assert bodies == {"short": "Hey Jo!", "plain": "Plain Jo"}
    assert base.variant_of(7) == ""


def test_campaigns_send_only_where_an_audience_file_gives_an_address():
    with pytest.raises(CampaignError, match="campaigns send by sms, voice, email"):
        parse_campaign(
            'id = "c"\ntenant = "acme"\nkind = "notice"\nchannel = "telegram"\nqueue = "q"\n'
            '[templates.telegram.en]\nbody = "x"\n'
        )


def voice_campaign(body: str = "Hello {{ name }}", machine: str = "Call us back, {{ name }}.", **extra: str):
    lines = [f"{k} = {v}" for k, v in extra.items()]
    return parse_campaign(
        f"""
id = "calls"
tenant = "acme"
kind = "collections"
channel = "voice"
fallback_channel = "sms"
queue = "support"
{chr(10).join(lines)}
[voice]
machine_message = '''{machine}'''
[templates.voice.en]
body = '''{body}'''
[templates.sms.en]
body = "Hi {{{{ name }}}}, we called about {{{{ balance }}}}."
"""
    )


def test_a_template_that_would_loop_a_million_times_stops_with_an_error_naming_it():
    million = "{% for i in range(1000) %}{% for j in range(1000) %}{{ name }}{% endfor %}{% endfor %}"
    silent = "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}"
    for source in (million, silent):
        with pytest.raises(TemplateProblem, match=r"template sms/en, line 1: more than 5,000 loop steps"):
            Renderer(campaign(sms=source)).render("sms", person(name="Jane"))
    over_a_string = "{% for a in name %}{% for b in name %}.{% endfor %}{% endfor %}"  # 10,000 steps
    with pytest.raises(TemplateProblem, match="loop steps"):
        Renderer(campaign(sms=over_a_string)).render("sms", person(name="x" * 100))
    # a loop that stays in budget renders as before, loop variables and else included
    fine = "{% for i in range(3) %}{{ loop.index }}{% if loop.last %}!{% endif %}{% else %}none{% endfor %}"
    assert Renderer(campaign(sms=fine)).render("sms", person()).body == "123!"


def test_rendering_stops_at_the_campaigns_message_size_limit():
    big = "{% for i in range(100) %}{{ name }}{% endfor %}"  # 100 x 20 characters
    small = campaign(sms=big, max_message_kb="1")
    with pytest.raises(TemplateProblem, match=r"^template sms/en: the message passes 1 KB; rendering stopped$"):
        Renderer(small).render("sms", person(name="x" * 20))
    assert len(Renderer(campaign(sms=big)).render("sms", person(name="x" * 20)).body) == 2000  # 64 KB by default


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**9 }}",
        "{{ '%999999999s' % name }}",
        "{{ '%999999999s'|format(name) }}",
        "{{ '{:>999999999}'.format(name) }}",
        "{{ '{:0>999999999}'.format(name) }}",
        "{{ '%.999999999f' % 1.5 }}",
        "{{ '%*d' % (999999999, 1) }}",
        "{{ name.ljust(999999999) }}",
        "{{ name|center(999999999) }}",
        "{{ name|indent(999999999, true) }}",
        "{{ ('y' * 6000)|replace('', 'x' * 60000) }}",
        "{{ range(1000)|join('x' * 60000) }}",
        "{% set block %}{% for i in range(100) %}{{ 'y' * 60000 }}{% endfor %}{% endset %}{{ block|length }}",
        "{{ 10 ** 100000 }}",
    ],
)
def test_one_expression_cannot_build_a_huge_value(source):
    with pytest.raises(TemplateProblem, match=r"template sms/en, line 1: (a|an) \w+"):
        Renderer(campaign(sms=source)).render("sms", person(name="Jane"))


def test_ordinary_operators_and_filters_still_work_in_the_bounded_sandbox():
    source = "{{ 'ab' * 2 }} {{ 2 ** 10 }} {{ '%05d' % 42 }} {{ 7 % 3 }} {{ '{:>6}'.format(name) }} {{ [1]|join }}"
    body = Renderer(campaign(sms=source)).render("sms", person(name="Jane")).body
    assert body == "abab 1024 00042 1   Jane 1"
    assert Renderer(campaign(sms="{{ '%5.2f%%' % 1.5 }} {{ '{0:.1f}'.format(2) }}")).render("sms", person()).body == (
        " 1.50% 2.0"
    )


def test_a_voice_message_longer_than_a_call_can_say_fails_with_the_reason():
    renderer = Renderer(voice_campaign(body="{% for i in range(1000) %}{{ name }}{% endfor %}"))
    with pytest.raises(TemplateProblem, match=r"voice/en: 5,000 characters, more than a call can say \(4,096\)"):
        renderer.render("voice", person(name="Janet"))
    assert renderer.render("voice", person(name="J")).body == "J" * 1000
    machine = Renderer(voice_campaign(machine="{% for i in range(1000) %}{{ name }}{% endfor %}"))
    with pytest.raises(TemplateProblem, match=r"template voice machine: 5,000 characters"):
        machine.render_machine(person(name="Janet"))


async def test_preview_of_a_voice_campaign_shows_the_answering_machine_message_too():
    machine = voice_campaign(machine="Call us back, {{ name }}, about {{ account }}.")
    rows = await shared().preview(machine, [person(name="Jane")])
    assert [(channel, result.body if isinstance(result, Rendered) else result) for _r, channel, result in rows] == [
        ("voice", "Hello Jane"),
        ("voice machine", "template voice machine, line 1: 'account' is undefined"),
    ]
    rows = await shared().preview(voice_campaign(), [person(name="Jane")])
    assert rows[1][2] == Rendered(body="Call us back, Jane.")


async def test_problems_renders_every_channel_and_the_machine_message_for_the_first_recipients():
    campaign_ = voice_campaign()
    assert await shared().problems(campaign_, [person(name="Jane", balance="$5")]) == []
    assert await shared().problems(campaign_, [person(name="Jane")]) == [
        "line 2: template sms/en, line 1: 'balance' is undefined"
    ]
