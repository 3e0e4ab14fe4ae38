"""Campaign templates: sandboxed, errors that name the template line, opt-out text, preview."""

import pytest

from workers.campaigns.model import CampaignError, Recipient, parse_campaign
from workers.campaigns.render import Renderer, TemplateProblem, preview


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


def test_collections_email_carries_the_unsubscribe_link():
    renderer = Renderer(campaign(kind="collections"))
    message = renderer.render("email", person(name="Jane", balance="$10"), {"unsubscribe_url": "https://x/u/1"})
    assert message.subject == "For Jane"
    assert message.body.startswith("Dear Jane, you owe $10.")
    assert "https://x/u/1" in message.body


def test_preview_shows_each_recipients_message_or_the_error_it_hits():
    rows = preview(
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
