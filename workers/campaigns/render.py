"""Campaign messages from templates that non-engineers write.

Templates run in Jinja2's ImmutableSandboxedEnvironment (router.templating) with
StrictUndefined: a missing field is an error naming the template and its line,
never a blank in a customer's message. Each template is compiled once per
campaign; rendering a recipient is then one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
from jinja2.sandbox import SecurityError

from router.templating import sandboxed
from workers.campaigns.model import Campaign, CampaignError, Recipient

MAX_BODY = 100_000  # characters: far above any message, far below a stream entry's limit
MAX_RANGE = 1000  # range() in a template: a typo must not become a billion-step loop
# Channels whose collections messages must tell the debtor how to opt out (Regulation F
# 12 CFR 1006.6(e)): SMS says the keyword, email carries the unsubscribe link.
OPTOUT_CHANNELS = frozenset({"sms", "email", "telegram", "webchat"})


class TemplateProblem(CampaignError):
    """A template that cannot be compiled or rendered; says which one and which line."""


@dataclass(frozen=True, slots=True)
class Rendered:
    body: str
    subject: str = ""


def _limited_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() of more than {MAX_RANGE} items")
    return numbers


def _template_line(exc: BaseException) -> int | None:
    """The template line a render error happened on (Jinja rewrites tracebacks so that
    template frames carry the template's own line numbers)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class Renderer:
    """The compiled templates of one campaign."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        env = sandboxed()
        env.globals["range"] = _limited_range
        # (variant, channel, locale) -> compiled body and subject; variant "" is the campaign's own
        self._compiled: dict[tuple[str, str, str], tuple[jinja2.Template, jinja2.Template | None]] = {}
        sets = [("", campaign.templates)] + [(v.name, v.templates) for v in campaign.variants]
        for variant, templates in sets:
            for channel, locales in templates.items():
                for locale, template in locales.items():
                    name = f"{variant + ':' if variant else ''}{channel}/{locale}"
                    body = self._compile(env, template.body, name)
                    subject = self._compile(env, template.subject, f"{name} subject") if template.subject else None
                    self._compiled[(variant, channel, locale)] = (body, subject)

    @staticmethod
    def _compile(env: jinja2.Environment, source: str, name: str) -> jinja2.Template:
        try:
            return env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateProblem(f"template {name}, line {exc.lineno}: {exc.message}") from None

    def template_of(self, channel: str, recipient: Recipient) -> tuple[str, str]:
        """(variant, locale) of the template a recipient gets on a channel: their variant's
        if it has one, else the campaign's; their locale (or its language), else the default."""
        wanted = recipient.locale.replace("_", "-")
        locales = [c for c in (wanted, wanted.split("-")[0]) if c] + [self.campaign.default_locale]
        variant = self.campaign.variant_of(recipient.seq)
        for candidate in (variant, "") if variant else ("",):
            for locale in locales:
                if (candidate, channel, locale) in self._compiled:
                    return candidate, locale
        return "", self.campaign.default_locale

    def render(self, channel: str, recipient: Recipient, extra: dict[str, str] | None = None) -> Rendered:
        """The message for a recipient on a channel; TemplateProblem names the template line."""
        variant, locale = self.template_of(channel, recipient)
        body_template, subject_template = self._compiled[(variant, channel, locale)]
        context = dict(recipient.fields)
        context.update(extra or {})
        name = f"{variant + ':' if variant else ''}{channel}/{locale}"
        body = self._run(body_template, context, name)
        subject = self._run(subject_template, context, f"{name} subject").strip() if subject_template else ""
        if len(body) > MAX_BODY:
            raise TemplateProblem(f"template {name}: the message is longer than {MAX_BODY} characters")
        return Rendered(body=self._with_optout(channel, body, context), subject=subject)

    @staticmethod
    def _run(template: jinja2.Template, context: dict[str, str], name: str) -> str:
        try:
            return template.render(context)
        except Exception as exc:  # anything a user's template can raise, reported with its line
            line = _template_line(exc)
            where = f"template {name}" + (f", line {line}" if line else "")
            message = exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else str(exc)
            raise TemplateProblem(f"{where}: {message}") from None

    def _with_optout(self, channel: str, body: str, context: dict[str, str]) -> str:
        """Collections texts and emails always say how to opt out; the engine adds it when the
        template forgot (the SMS keyword, the email unsubscribe link)."""
        if self.campaign.kind != "collections" or channel not in OPTOUT_CHANNELS:
            return body
        if channel == "email":
            url = context.get("unsubscribe_url", "")
            if url and url not in body:
                return f"{body.rstrip()}\n\nTo stop these emails: {url}\n"
            return body
        if "stop" in body.lower():
            return body
        return f"{body.rstrip()} {self.campaign.optout_text}"


def preview(campaign: Campaign, recipients: list[Recipient]) -> list[tuple[Recipient, str, Rendered | str]]:
    """The message each recipient would get on the campaign's channel (or the error it hits)."""
    renderer = Renderer(campaign)
    rows: list[tuple[Recipient, str, Rendered | str]] = []
    for recipient in recipients:
        channel = campaign.channel
        try:
            rows.append((recipient, channel, renderer.render(channel, recipient, _sample_extra(channel))))
        except TemplateProblem as exc:
            rows.append((recipient, channel, str(exc)))
    return rows


def _sample_extra(channel: str) -> dict[str, str]:
    return {"unsubscribe_url": "https://example.invalid/u/PREVIEW"} if channel == "email" else {}
