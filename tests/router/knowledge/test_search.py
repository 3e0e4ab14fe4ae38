"""Searching articles: ranked, English by its stems, Chinese and Japanese by character
bigrams, only what the searcher may see, and the index follows every edit."""

from __future__ import annotations

from router.knowledge import articles, search
from tests.router.knowledge.factories import kb_world, published


def test_english_words_are_stemmed_and_cjk_runs_become_bigrams() -> None:
    assert search.terms("Resetting your passwords", "en") == ["reset", "your", "password"]
    assert search.terms("如何重置密码", "zh-CN") == ["如何", "何重", "重置", "置密", "密码"]
    assert search.terms("パスワード", "ja") == ["パス", "スワ", "ワー", "ード"]
    assert search.terms("\uff21\uff22\uff23 金", "en") == ["abc", "金"]  # full-width folded; a lone character is a term


async def test_english_search_ranks_the_article_about_it_first_and_finds_inflected_words() -> None:
    w = await kb_world()
    meter = await published(w, "Reading your meter", "Open the meter cupboard and read the numbers on the meter.")
    bills = await published(w, "Paying bills", "You can pay by card. Your meter readings set the bill.")
    await published(w, "Moving house", "Tell us the date you move.")
    found = await articles.find(w.store, w.tenant, "how do I read my meters")
    assert [a.id for a in found] == [meter.id, bills.id]


async def test_chinese_search_finds_the_article_by_a_phrase_inside_unspaced_text() -> None:
    w = await kb_world()
    password = await published(w, "如何重置密码", "在登录页面点击忘记密码。然后按照邮件中的步骤操作。", locale="zh-CN")
    await published(w, "如何支付账单", "您可以使用银行卡支付账单。", locale="zh-CN")
    found = await articles.find(w.store, w.tenant, "忘记密码怎么办")
    assert [a.id for a in found][:1] == [password.id]
    assert [a.id for a in await articles.find(w.store, w.tenant, "银行卡")] != [password.id]


async def test_japanese_search_finds_katakana_and_kanji_terms() -> None:
    w = await kb_world()
    password = await published(
        w, "パスワードの再設定", "ログイン画面で「パスワードを忘れた」を押してください。", locale="ja"
    )
    bill = await published(w, "請求書の支払い", "クレジットカードでお支払いいただけます。", locale="ja")
    assert [a.id for a in await articles.find(w.store, w.tenant, "パスワード")] == [password.id]
    assert [a.id for a in await articles.find(w.store, w.tenant, "支払い方法")] == [bill.id]
    assert [a.id for a in await articles.find(w.store, w.tenant, "パスワード", locale="en")] == []


async def test_only_published_articles_of_the_asked_categories_are_found_and_edits_reindex() -> None:
    w = await kb_world()
    public = await published(w, "Refunds", "Refunds take five days.", category="billing")
    internal = await published(w, "Refunds by hand", "Refund in the old system.", category="internal")
    draft = await articles.create(
        w.store, w.tenant, articles.Draft(title="Refund draft", body="Refunds soon.", category="billing", locale="en"),
        actor="sue", role="supervisor",
    )  # fmt: skip
    assert {a.id for a in await articles.find(w.store, w.tenant, "refund")} == {public.id, internal.id}
    assert [a.id for a in await articles.find(w.store, w.tenant, "refund", categories=["billing"])] == [public.id]
    every = await articles.find(w.store, w.tenant, "refund", statuses=tuple(articles.STATUSES))
    assert draft.id in {a.id for a in every}

    await articles.edit(
        w.store, w.tenant, public.id,
        articles.Draft(title="Money back", body="Repayments take five days.", category="billing", locale="en"),
        actor="sue", role="supervisor", version=public.version,
    )  # fmt: skip
    assert public.id not in {a.id for a in await articles.find(w.store, w.tenant, "refund")}
    assert [a.id for a in await articles.find(w.store, w.tenant, "repayment")] == [public.id]
    await articles.move(w.store, w.tenant, public.id, "archive", actor="sue", role="supervisor")
    assert await articles.find(w.store, w.tenant, "repayment") == []


async def test_a_query_with_no_words_or_no_match_finds_nothing() -> None:
    w = await kb_world()
    await published(w, "Refunds", "Refunds take five days.")
    assert await articles.find(w.store, w.tenant, "  ?! ") == []
    assert await articles.find(w.store, w.tenant, "zebra") == []
