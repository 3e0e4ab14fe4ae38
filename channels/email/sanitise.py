"""A customer's HTML mail made safe to show in the agent inbox (nh3, an allow-list).

Kept: text formatting, lists, tables, quotes, links (with rel="noopener
noreferrer", http/https/mailto only) and images embedded in the message itself
(data: URIs of raster types). Removed: scripts, styles, forms, frames, event
handlers, and remote images by default: loading one tells the sender the mail
was read, and from where (a tracking pixel). The raw HTML stays in the
attachment store as it came; this is only for display.
"""

from __future__ import annotations

import re

import nh3

TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "col", "colgroup", "dd", "del", "div",
        "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark",
        "ol", "p", "pre", "q", "s", "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td",
        "tfoot", "th", "thead", "tr", "u", "ul",
    }
)  # fmt: skip
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan", "align", "valign"},
    "th": {"colspan", "rowspan", "align", "valign", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "ol": {"start", "type"},
    "table": {"summary"},
    "blockquote": {"cite"},
    "*": {"dir", "lang"},
}
# Removed with everything inside them, not just their tags.
HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript", "iframe", "object", "svg", "math"})
URL_SCHEMES = frozenset({"http", "https", "mailto", "data", "cid"})
EMBEDDED_IMAGE = re.compile(r"^data:image/(png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]+$", re.IGNORECASE)


def safe_html(html: str, *, remote_images: bool = False) -> str:
    """The HTML with only what is safe to show; remote images only when asked for."""

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag == "img" and attribute == "src":
            if EMBEDDED_IMAGE.match(value):
                return value
            if remote_images and value.lower().startswith("https://"):
                return value
            return None  # a tracking pixel, or a cid: part the inbox cannot reach
        if attribute in ("href", "cite") and value.lower().startswith(("data:", "cid:")):
            return None  # data: and cid: only make sense as image sources
        return value

    return nh3.clean(
        html,
        tags=set(TAGS),
        clean_content_tags=set(HIDDEN),
        attributes={tag: set(names) for tag, names in ATTRIBUTES.items()},
        attribute_filter=keep,
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
