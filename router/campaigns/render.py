"""Campaign messages from templates that non-engineers write.

Templates run in a sandbox (ImmutableSandboxedEnvironment, as router.templating's,
with StrictUndefined): a missing field is an error naming the template and its line,
never a blank in a customer's message. A runaway template (nested loops, a huge
repetition) stops with an error naming it instead of holding a worker: every loop
spends from a per-message step budget; `range()`, `*`, `**`, format widths and the
filters and str methods that multiply a text are bounded; and the output is streamed
and cut off at the campaign's `max_message_kb`. Each template is
compiled once per campaign; rendering a recipient is then one call.

These checks see only what the sandbox can intercept, so live paths never call Renderer
themselves: router.campaigns.isolated runs it in a child process with hard time and
memory limits.
"""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from router.campaigns.model import Campaign, CampaignError, Recipient

MAX_RANGE = 1000  # range() in a template: a typo must not become a billion-step loop
# Loop iterations per message, all loops together: nested loops multiply (1000 x 1000
# is a million steps), and no text, email or call needs more than this.
MAX_LOOP_STEPS = 5_000
MAX_POWER = 64  # `**` exponent: 10 ** 10 ** 9 would never finish
# Twilio's <Say> reads at most 4,096 characters; a longer text fails the call, so a voice
# message (and the answering-machine message) longer than this never goes out.
SAY_LIMIT = 4_096
MACHINE = "voice machine"  # the preview row and template name of the answering-machine message
SCRIPT = "agent script"  # the template name of the script an agent reads (voice.script)
# Channels whose collections messages must tell the debtor how to opt out (Regulation F
# 12 CFR 1006.6(e)): SMS says the keyword, email carries the unsubscribe link.
OPTOUT_CHANNELS = frozenset({"sms", "email", "telegram", "webchat"})
# A text that already tells how to opt out: an instruction to send an opt-out keyword
# ("Reply STOP", "text stop to ...", "STOP to opt out"). A word that merely contains
# "stop" (Christopher, non-stop, stopped) is no notice, so the engine still adds one.
_KEYWORDS = r"(?:STOP|STOPALL|UNSUBSCRIBE|CANCEL|END|QUIT)"
_NOTICE = re.compile(
    rf"\b(?i:reply|text|txt|send|respond)(?i:\s+with)?\s+[\"'\u201c\u2018]?(?i:{_KEYWORDS})\b"
    rf"|\b{_KEYWORDS}[\"'\u201d\u2019]?\s+(?i:to\s+(?:opt[\s-]?out|unsubscribe|stop|end|cancel|quit))\b"
)

_LOOP_FILTER = "_loop_budget"
# Widths and precisions in format strings allocate that much ("%999999999s", "%.999999999f",
# "{:>999999999}"); one given as an argument ("%*s", "{:{w}}") cannot be checked, so is refused.
_PRINTF_SPEC = re.compile(r"%[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*?:([^{}]*\{?)")


class TemplateProblem(CampaignError):
    """A template that cannot be compiled or rendered; says which one and which line."""


@dataclass(frozen=True, slots=True)
class Rendered:
    body: str
    subject: str = ""


# Steps left in the message being rendered (None outside Renderer._run: no budget).
_steps: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("campaign_template_steps", default=None)


def _spend(steps: int = 1) -> None:
    left = _steps.get()
    if left is None:
        return
    left[0] -= steps
    if left[0] < 0:
        raise SecurityError(f"more than {MAX_LOOP_STEPS:,} loop steps in one message")


def _loop_budget(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _spend()
        yield item


def _limited_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() of more than {MAX_RANGE} items")
    return numbers


class _CampaignSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with bounded work: each `{% for %}` is rewritten at parse time
    to iterate through the step budget, and the operators that can build a huge value
    from a short expression check the size first."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, max_chars: int) -> None:
        super().__init__(autoescape=False, undefined=jinja2.StrictUndefined)
        self.max_chars = max_chars
        self.globals["range"] = _limited_range
        self.filters[_LOOP_FILTER] = _loop_budget
        self.filters.update(
            center=self._center,
            format=self._format,
            indent=self._indent,
            replace=jinja2.pass_eval_context(functools.partial(self._replace)),
            join=jinja2.pass_eval_context(functools.partial(self._join)),
        )
        # Macros, {% set %} and {% filter %} blocks join their output here, out of the stream's sight.
        self.concat = self._concat  # type: ignore[method-assign]

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.iter.lineno)
        return tree

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    self._check_size(len(seq) * times, "a repetition")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(right) > MAX_POWER:
                raise SecurityError(f"a power above {MAX_POWER}")
        elif isinstance(left, str):
            self._check_widths(_printf_widths(left))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # str methods that build a string as long as a number says ("x".ljust(10**9),
        # "{:>999999999}".format(x)) or multiply one (replace, join) are checked first.
        target = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            name = getattr(target, "__name__", "")
            __self._check_widths(a for a in (*args, *kwargs.values()) if isinstance(a, int) and not isinstance(a, bool))
            if name in ("format", "format_map"):
                __self._check_widths(_format_widths(owner))
            elif name == "replace" and len(args) >= 2:
                __self._check_replace(owner, args[0], args[1])
            elif name == "join" and args:
                args = (list(args[0]), *args[1:])
                __self._check_join(owner, args[0])
        return super().call(__context, __obj, *args, **kwargs)

    def _check_size(self, size: int, what: str) -> None:
        if size > self.max_chars:
            raise SecurityError(f"{what} longer than {self.max_chars:,} characters")

    def _check_widths(self, widths: Iterable[int | str]) -> None:
        for width in widths:
            if width in ("*", "{"):
                raise SecurityError("a width given as an argument")
            if int(width) > self.max_chars:
                raise SecurityError(f"a width above {self.max_chars:,}")

    def _check_replace(self, text: Any, old: Any, new: Any) -> None:
        text, old, new = str(text), str(old), str(new)
        self._check_size(len(text) + text.count(old) * max(len(new) - len(old), 0), "a replacement")

    def _check_join(self, sep: str, items: list[Any]) -> None:
        self._check_size(sum(len(str(i)) for i in items) + len(sep) * max(len(items) - 1, 0), "a join")

    def _concat(self, parts: Iterable[str]) -> str:
        text = "".join(parts)
        self._check_size(len(text), "a block")
        return text

    def _center(self, value: Any, width: int = 80) -> str:
        self._check_widths([width])
        return jinja2.filters.do_center(value, width)

    def _format(self, value: Any, *args: Any, **kwargs: Any) -> str:
        self._check_widths(_printf_widths(str(value)))
        return jinja2.filters.do_format(value, *args, **kwargs)

    def _indent(self, value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
        text, pad = str(value), len(width) if isinstance(width, str) else width
        self._check_size(len(text) + (text.count("\n") + 1) * pad, "an indented text")
        return jinja2.filters.do_indent(value, width, first, blank)

    def _replace(self, context: Any, value: Any, old: Any, new: Any, count: int | None = None) -> str:
        self._check_replace(value, old, new)
        return jinja2.filters.do_replace(context, value, old, new, count)

    def _join(self, context: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
        items = list(value)
        self._check_join(str(d), items)
        return jinja2.filters.sync_do_join(context, items, d, attribute)


def _printf_widths(text: str) -> list[str]:
    return [w for groups in _PRINTF_SPEC.findall(text) for w in groups if w]


def _format_widths(text: str) -> list[str]:
    return [w for spec in _FORMAT_SPEC.findall(text) for w in re.findall(r"\d+|\{", spec)]


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
        self.max_bytes = campaign.max_message_kb * 1024
        env = _CampaignSandbox(self.max_bytes)
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
        source = campaign.voice.machine_message if "voice" in campaign.channels else ""
        self._machine = self._compile(env, source, MACHINE) if source else None
        self._script = self._compile(env, campaign.voice.script, SCRIPT) if campaign.voice.script else None

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
        if channel == "voice":
            _check_say(body, name)
        return Rendered(body=self._with_optout(channel, body, context), subject=subject)

    @property
    def has_machine_message(self) -> bool:
        return self._machine is not None

    def render_machine(self, recipient: Recipient) -> str:
        """The answering-machine message of a voice campaign for a recipient ("" for none),
        rendered when the call is queued so that a broken one fails the recipient, never
        the call; TemplateProblem names the template line."""
        if self._machine is None:
            return ""
        said = self._run(self._machine, dict(recipient.fields), MACHINE).strip()
        _check_say(said, MACHINE)
        return said

    def render_script(self, recipient: Recipient) -> str:
        """The agent's script for a recipient ("" for none); TemplateProblem names the line."""
        if self._script is None:
            return ""
        return self._run(self._script, dict(recipient.fields), SCRIPT).strip()

    def _run(self, template: jinja2.Template, context: dict[str, str], name: str) -> str:
        """Render with the step budget, streaming, and stop once past max_bytes."""
        parts: list[str] = []
        size = 0
        token = _steps.set([MAX_LOOP_STEPS])
        try:
            for part in template.generate(context):
                size += len(part) if part.isascii() else len(part.encode("utf-8"))
                if size > self.max_bytes:
                    raise TemplateProblem(
                        f"template {name}: the message passes {self.campaign.max_message_kb} KB; rendering stopped"
                    )
                parts.append(part)
        except TemplateProblem:
            raise
        except Exception as exc:  # anything a user's template can raise, reported with its line
            line = _template_line(exc)
            where = f"template {name}" + (f", line {line}" if line else "")
            if isinstance(exc, MemoryError):  # the child process's limit (router.campaigns.isolated)
                message = "it needs more memory than a message may use; rendering stopped"
            elif isinstance(exc, RecursionError):
                message = "it calls itself too deeply; rendering stopped"
            else:
                message = exc.message if isinstance(exc, jinja2.TemplateError) and exc.message else str(exc)
            raise TemplateProblem(f"{where}: {message}") from None
        finally:
            _steps.reset(token)
        return "".join(parts)

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
        if tells_how_to_opt_out(body, self.campaign.optout_text):
            return body
        return f"{body.rstrip()} {self.campaign.optout_text}"


def tells_how_to_opt_out(body: str, optout_text: str) -> bool:
    """Whether a text already carries an opt-out notice: the campaign's own, or an
    instruction to send an opt-out keyword."""
    if optout_text and " ".join(optout_text.split()).casefold() in " ".join(body.split()).casefold():
        return True
    return _NOTICE.search(body) is not None


def _check_say(text: str, name: str) -> None:
    if len(text) > SAY_LIMIT:
        raise TemplateProblem(f"template {name}: {len(text):,} characters, more than a call can say ({SAY_LIMIT:,})")


def sample_extra(channel: str) -> dict[str, str]:
    """What a preview fills in for the fields only a real send knows (the unsubscribe link)."""
    return {"unsubscribe_url": "https://example.invalid/u/PREVIEW"} if channel == "email" else {}
