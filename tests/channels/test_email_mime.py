"""Reading an email into what an agent sees, as a specification.

Fixture messages are built with the standard library's email package, as a mail
client would build them, then read back from their bytes.
"""

from __future__ import annotations

import base64
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage

from channels.email import mime


def message(body: str = "Hello, my invoice is wrong.", **headers: str) -> EmailMessage:
    """A plain-text message from a customer to acme, with any extra headers."""
    msg = EmailMessage()
    msg["From"] = Address("Jane Doe", addr_spec="jane@example.com")
    msg["To"] = "help@acme.example"
    msg["Subject"] = headers.pop("subject", "Invoice")
    msg["Message-ID"] = headers.pop("message_id", "<first@example.com>")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def legacy(body: str, charset: str, subject: str) -> bytes:
    """A message in a legacy charset, its subject an RFC 2047 encoded word in that charset,
    as the mail clients of the charset's countries send them."""
    encoding = "7bit" if charset == "iso-2022-jp" else "base64"
    payload = body.encode(charset) if encoding == "7bit" else base64.encodebytes(body.encode(charset))
    head = (
        "From: customer@example.cn\r\nTo: help@acme.example\r\n"
        f"Subject: {Header(subject, charset).encode()}\r\nMessage-ID: <{charset}@example.cn>\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: text/plain; charset="{charset}"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    return head.encode("ascii") + payload


def delivery_report() -> bytes:
    """A bounce as Postfix sends it: multipart/report with a delivery-status part."""
    return (
        b"From: MAILER-DAEMON@mx.example.com\r\nTo: help@acme.example\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce@mx.example.com>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        b"Final-Recipient: rfc822; gone@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"--B--\r\n"
    )


def test_plain_message_gives_sender_subject_body_and_id() -> None:
    mail = mime.read(message().as_bytes())
    assert (mail.sender, mail.sender_name) == ("jane@example.com", "Jane Doe")
    assert mail.subject == "Invoice"
    assert mail.body == "Hello, my invoice is wrong."
    assert mail.message_id == "first@example.com"
    assert not mail.auto_submitted and not mail.bounce and not mail.attachments


def test_multipart_alternative_prefers_the_plain_text_and_keeps_the_html() -> None:
    msg = message("Plain words")
    msg.add_alternative("<p>Rich <b>words</b></p>", subtype="html")
    mail = mime.read(msg.as_bytes())
    assert mail.body == "Plain words"
    assert "<b>words</b>" in mail.html


def test_html_only_mail_becomes_readable_text() -> None:
    html = """<html><head><style>p {color: red}</style><script>alert(1)</script></head>
    <body><h1>Meter</h1><p>My reading is <b>wrong</b>.</p><ul><li>March</li><li>April</li></ul>
    <p>See <a href="https://example.com/photo">the photo</a>&nbsp;&amp; call me.</p></body></html>"""
    msg = message()
    msg.set_content(html, subtype="html")
    mail = mime.read(msg.as_bytes())
    assert mail.body == (
        "Meter\n\nMy reading is wrong.\n\n- March\n- April\n\nSee the photo <https://example.com/photo> & call me."
    )
    assert "alert" not in mail.body and "color" not in mail.body
    assert mail.html.startswith("<html>")


def test_attachments_are_collected_with_their_type_and_name() -> None:
    msg = message("See attached")
    msg.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="bill.pdf")
    msg.add_attachment(b"\x89PNG fake", maintype="image", subtype="png", filename="meter.png")
    mail = mime.read(msg.as_bytes())
    assert mail.body == "See attached"
    assert [(p.filename, p.content_type, p.data) for p in mail.attachments] == [
        ("bill.pdf", "application/pdf", b"%PDF-1.4 fake"),
        ("meter.png", "image/png", b"\x89PNG fake"),
    ]


def test_encoded_attachment_names_are_decoded() -> None:
    msg = message("x")
    msg.add_attachment(b"data", maintype="application", subtype="octet-stream", filename="账单.pdf")
    assert mime.read(msg.as_bytes()).attachments[0].filename == "账单.pdf"


def test_a_forwarded_message_is_kept_whole_and_shown_in_the_body() -> None:
    inner = message("The original complaint", subject="Original", message_id="<inner@example.com>")
    inner.add_attachment(b"photo", maintype="image", subtype="jpeg", filename="damage.jpg")
    outer = message("Forwarding this")
    outer.add_attachment(inner)
    mail = mime.read(outer.as_bytes())
    assert mail.body.startswith("Forwarding this")
    assert "Subject: Original" in mail.body and "The original complaint" in mail.body
    kinds = [(p.content_type, p.filename) for p in mail.attachments]
    assert kinds == [("message/rfc822", "Original.eml"), ("image/jpeg", "damage.jpg")]
    assert b"inner@example.com" in mail.attachments[0].data


def test_chinese_and_japanese_legacy_charsets_and_encoded_subjects_are_decoded() -> None:
    cases = [
        ("gb2312", "我的账单有问题，请帮忙。", "账单问题"),  # noqa: RUF001 (a Chinese comma)
        ("big5", "我的帳單有問題，請幫忙。", "帳單問題"),  # noqa: RUF001
        ("iso-2022-jp", "請求書について質問があります。", "請求書"),
        ("koi8-r", "Мой счёт неверный.", "Счёт"),
    ]
    for charset, body, subject in cases:
        mail = mime.read(legacy(body, charset, subject))
        assert (mail.subject, mail.body.strip()) == (subject, body), charset


def test_gb2312_labelled_text_with_gbk_characters_still_reads() -> None:
    # 镕 is in GBK/GB18030, not GB2312: senders label such text GB2312 anyway
    mail = mime.read(legacy("朱镕基", "gbk", "x").replace(b'charset="gbk"', b'charset="gb2312"'))
    assert mail.body.strip() == "朱镕基"


def encoded_word(data: bytes, label: str) -> str:
    """One RFC 2047 B-encoded word of bytes already in `label`'s charset, as a sender wrote it."""
    return f"=?{label}?B?{base64.b64encode(data).decode()}?="


def headed(subject: str, sender: str, charset: str = "utf-8") -> bytes:
    """A message whose Subject and From are given as they go on the wire."""
    return (
        f"From: {sender}\r\nTo: help@acme.example\r\nSubject: {subject}\r\nMessage-ID: <h@example.cn>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\n\r\nhello\r\n"
    ).encode("utf-8", "surrogateescape")


def raw_text(text: str, codec: str) -> str:
    """`text` in `codec` as 8-bit bytes in a header (a str to put into `headed`)."""
    return text.encode(codec).decode("utf-8", "surrogateescape")


def test_subjects_and_display_names_are_read_with_the_body_charset_supersets() -> None:
    # each label as senders use it: a character only its superset has, in an encoded word
    cases = [
        ("GB2312", "gbk", "朱镕基的问题", "朱镕基"),  # 镕 is GBK: it came as 朱\ufffdF基的问题
        ("GBK", "gb18030", "问题 €", "张三"),
        ("Big5", "big5hkscs", "佢哋嘅帳單", "陳大文"),  # Cantonese characters of HKSCS
        ("ISO-2022-JP", "iso2022_jp_ext", "ｾｰﾙのお知らせ", "ﾔﾏﾀﾞ"),  # half-width kana stayed =?ISO-2022-JP?B?...?=
        ("ISO-2022-JP", "iso2022_jp_2004", "﨑の件", "高﨑"),  # JIS X 0213
        ("Shift_JIS", "cp932", "①の請求書", "髙橋"),  # CP932's NEC and IBM rows
        ("EUC-KR", "cp949", "똠방각하", "김철수"),
        ("KOI8-R", "koi8_r", "Счёт", "Иван"),
    ]
    for label, codec, subject, name in cases:
        sender = f"{encoded_word(name.encode(codec), label)} <c@example.cn>"
        mail = mime.read(headed(encoded_word(subject.encode(codec), label), sender))
        assert (mail.subject, mail.sender_name, mail.sender) == (subject, name, "c@example.cn"), label


def test_outlook_iso_2022_jp_with_nec_characters_reads_as_cp932() -> None:
    # Microsoft's ISO-2022-JP (CP50220) puts ① ㈱ (NEC row 13) in plain JIS X 0208 escapes
    raw = headed(encoded_word(b"\x1b$B-!-j\x1b(B \x1b$B@A5a=q\x1b(B", "ISO-2022-JP"), "a@example.jp")
    assert mime.read(raw).subject == "①㈱ 請求書"
    body = b"From: a@example.jp\r\nContent-Type: text/plain; charset=iso-2022-jp\r\n\r\n\x1b(I1\x1b$B-!\x1b(B\r\n"
    assert mime.read(body).body.strip() == "ｱ①"


def test_a_character_split_between_two_encoded_words_reads_whole() -> None:
    for label, codec in (("UTF-8", "utf-8"), ("GB2312", "gbk"), ("Big5", "big5hkscs")):
        data = "朱镕基的问题" if codec != "big5hkscs" else "佢哋嘅帳單"
        data = data.encode(codec)
        cut = 4 if codec == "utf-8" else 3  # inside the second character
        subject = f"Re: {encoded_word(data[:cut], label)}\r\n {encoded_word(data[cut:], label)} [#c-abcdefghij]"
        mail = mime.read(headed(subject, "a@example.cn"))
        assert mail.subject == f"Re: {data.decode(codec)} [#c-abcdefghij]", label


def test_raw_8bit_headers_read_as_utf8_then_as_the_message_charset() -> None:
    mail = mime.read(headed("Frage zur Rechnung für März", "Jörg Müller <j@example.de>"))
    assert (mail.subject, mail.sender_name) == ("Frage zur Rechnung für März", "Jörg Müller")
    gbk = headed(raw_text("朱镕基的问题", "gbk"), raw_text("张三", "gbk") + " <z@example.cn>", charset="gb2312")
    assert (mime.read(gbk).subject, mime.read(gbk).sender_name) == ("朱镕基的问题", "张三")
    jis = headed("請求書".encode("iso2022_jp").decode("ascii"), "a@example.jp")  # 7-bit escapes, no word
    assert mime.read(jis).subject == "請求書"
    latin = headed(raw_text("Réclamation", "cp1252"), "a@example.fr", charset="iso-8859-1")
    assert mime.read(latin).subject == "Réclamation"


def test_what_is_not_an_encoded_word_is_left_as_it_came() -> None:
    mail = mime.read(headed("=?utf-8?b?@@@?= and =?nonsense?q?Caf=C3=A9?=", "a@example.com"))
    assert mail.subject == "=?utf-8?b?@@@?= and Café"  # an unknown label: read as UTF-8


def test_threading_ids_come_from_in_reply_to_then_references() -> None:
    msg = message(
        message_id="<reply@example.com>",
        In_Reply_To="<second@acme.example>",
        References="<first@acme.example> <second@acme.example>",
    )
    mail = mime.read(msg.as_bytes())
    assert mail.thread == ["second@acme.example", "first@acme.example"]


def test_auto_replies_and_bulk_mail_are_flagged() -> None:
    flagged = [
        {"Auto_Submitted": "auto-replied"},
        {"Precedence": "bulk"},
        {"Precedence": "junk"},
        {"Precedence": "list"},
        {"X_Autoreply": "yes"},
        {"X_Auto_Response_Suppress": "All"},
        {"X_Auto_Response_Suppress": "DR, OOF, AutoReply"},
        {"List_Id": "Customers <customers.lists.example.com>"},
        {"List_Unsubscribe": "<mailto:leave@lists.example.com>"},
    ]
    for headers in flagged:
        assert mime.read(message(**headers).as_bytes()).auto_submitted, headers
    assert not mime.read(message(Auto_Submitted="no").as_bytes()).auto_submitted
    assert not mime.read(message(X_Auto_Response_Suppress="DR, NDR").as_bytes()).auto_submitted  # reports only


def test_delivery_status_reports_are_bounces() -> None:
    assert mime.read(delivery_report()).bounce


def test_broken_and_missing_headers_are_tolerated() -> None:
    raw = (
        b"From: =?utf-8?q?broken\r\n"
        b"Subject: =?unknown-8bit?b?SGVsbG8=?= caf\xe9\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
        b"\r\n"
        b"caf\xc3\xa9 body\r\n"
    )
    mail = mime.read(raw)
    assert mail.sender == "" and mail.message_id == ""
    assert "caf" in mail.subject
    assert mail.body == "café body"


def test_undeclared_8bit_body_reads_as_utf8_or_with_replacement() -> None:
    raw = b"From: a@example.com\r\nSubject: hi\r\n\r\nna\xefve \xff end\r\n"
    mail = mime.read(raw)
    assert mail.body.startswith("na") and mail.body.endswith("end")
    mail.body.encode("utf-8")  # storable: no surrogates left


def test_huge_headers_are_read_but_never_kept_in_the_parsed_header_cache() -> None:
    # the cache outlives each message: a sender's megabyte headers must not pile up in it
    # (Authentication-Results is read through the email package's header objects)
    def cached_after_reading(results: str) -> int:
        mime._parsed_header.cache_clear()
        mail = mime.read(message(Authentication_Results=results).as_bytes())
        assert [r.replace(" ", "") for r in mail.auth_results] == [results.replace(" ", "")]
        return mime._parsed_header.cache_info().currsize

    assert cached_after_reading("mx.example; spf=pass " + "x" * 200_000) == cached_after_reading("mx; spf=pass") - 1
