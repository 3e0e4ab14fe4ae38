"""An article's body as HTML that is safe to put on any page.

Markdown is parsed by markdown-it-py in CommonMark mode with raw HTML turned off (a `<script>`
in an article stays text), then the result is sanitised by nh3 (ammonia) to a short list of
tags and to http, https and mailto links, so nothing an author writes can run on the desk
or on the public help page. Plain text is escaped, its line breaks kept by the page's CSS.
"""

from __future__ import annotations

import html

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

FORMATS = ("markdown", "text")

_PARSER = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")
_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "img",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}}
_SCHEMES = {"http", "https", "mailto"}


def to_html(body: str, body_format: str) -> Markup:
    """The body, rendered and sanitised (Markdown) or escaped (plain text)."""
    if body_format == "text":
        return Markup('<div class="plain">') + escape(body) + Markup("</div>")
    clean = nh3.clean(
        _PARSER.render(body), tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    )  # fmt: skip
    return Markup(clean)


def to_text(body: str, body_format: str) -> str:
    """The body as plain text (what a reply or a snippet shows): Markdown without its markup."""
    if body_format == "text":
        return body
    return html.unescape(nh3.clean(_PARSER.render(body), tags=set(), strip_comments=True)).strip()
