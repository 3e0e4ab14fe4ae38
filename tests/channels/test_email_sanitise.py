"""Customers' HTML mail shown in the inbox: only an allow-list of harmless markup survives."""

from __future__ import annotations

from email.message import EmailMessage

from channels.email import mime
from channels.email.sanitise import safe_html

PIXEL = '<img src="https://tracker.example/open.gif?id=42" alt="" width="1" height="1">'


def test_scripts_styles_and_event_handlers_are_removed_with_their_content() -> None:
    html = (
        "<html><head><style>p {display:none}</style><script>steal()</script></head>"
        '<body><p onclick="steal()" style="color:red">Hello <b>there</b></p>'
        "<iframe src='https://evil.example'>frame</iframe><svg><script>x()</script></svg></body></html>"
    )
    assert safe_html(html) == "<p>Hello <b>there</b></p>"


def test_links_keep_safe_targets_and_never_leak_the_inbox() -> None:
    html = '<a href="https://acme.example/bill" target="_blank">bill</a> <a href="javascript:steal()">x</a>'
    assert safe_html(html) == (
        '<a href="https://acme.example/bill" rel="noopener noreferrer">bill</a> <a rel="noopener noreferrer">x</a>'
    )
    assert 'href="mailto:jane@example.com"' in safe_html('<a href="mailto:jane@example.com">me</a>')


def test_remote_images_are_blocked_unless_asked_for_but_embedded_ones_show() -> None:
    embedded = '<img src="data:image/png;base64,iVBORw0KGgo=" alt="meter">'
    shown = safe_html(PIXEL + embedded)
    assert "tracker.example" not in shown and shown.endswith(embedded) and shown.count("src=") == 1
    assert 'src="https://tracker.example/open.gif?id=42"' in safe_html(PIXEL, remote_images=True)
    assert "src" not in safe_html('<img src="data:text/html;base64,PHNjcmlwdD4=">')


def test_forms_comments_and_unknown_tags_leave_only_their_text() -> None:
    html = "<form action='https://evil.example'><input value='pw'>Sign in</form><!-- secret --><blink>hi</blink>"
    assert safe_html(html) == "Sign inhi"


def test_tables_and_quotes_of_a_real_html_only_mail_survive() -> None:
    message = EmailMessage()
    message["From"] = "jane@example.com"
    message.set_content(
        "<table><tr><td colspan=2 onmouseover='x()'>Reading</td></tr></table>"
        "<blockquote cite='https://acme.example'>On Monday you wrote</blockquote>",
        subtype="html",
    )
    html = mime.read(message.as_bytes()).html
    assert safe_html(html).strip() == (
        '<table><tbody><tr><td colspan="2">Reading</td></tr></tbody></table>'
        '<blockquote cite="https://acme.example">On Monday you wrote</blockquote>'
    )
