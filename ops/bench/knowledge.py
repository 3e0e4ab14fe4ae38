"""Knowledge-base benchmark: writing articles and searching them, against Redis's ranking alone.

    python -m ops.bench knowledge [--articles 2000] [--queries 500] [--json]

It starts its own redis-server (or uses an empty one named by --redis-url), then, in this
process:

1. Writing. ``--articles`` articles (English, Chinese and Japanese, a third each, of words
   drawn from a fixed vocabulary with a fixed seed) are written, sent for review and
   published through router.knowledge.articles, as the desk does: each step one WATCHed
   transaction that stores the article, its history and its index. Reported: steps a second.
2. Searching. ``--queries`` queries (two to four words, or a CJK phrase, from the same
   vocabularies) through articles.find, as the reply box and the widget ask: latency
   percentiles. The ceiling, measured on the same queries in the same run: the ranking
   transaction find makes (ZUNIONSTORE of the query's term sets, the best 200, DEL), alone,
   which any ranking of these terms in Redis needs; and a PING (a round trip).

This is a measurement, not a test: nothing asserts on timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time

from ops.bench._args import positive
from ops.bench._measure import percentile
from ops.redis_server import RedisServer
from router.config import parse_deployment
from router.keys import Keys
from router.knowledge import articles, search
from router.settings import Settings
from router.store import Store, connect

TENANT = "kb"
SEED = 20261208
DEPLOYMENT = f"""
[[tenants]]
id = "{TENANT}"

[[tenants.queues]]
id = "q"

[tenants.knowledge]
locales = ["en", "zh-CN", "ja"]
categories = [{{ id = "help", name = "Help", public = true }}]
"""
ENGLISH = (
    "account bill payment card refund meter reading supply tariff contract address move house direct debit "
    "invoice balance credit charge price change smart install engineer appointment outage power gas "
    "electricity water leak emergency password login email phone update renew cancel switch provider "
    "discount late fee statement estimate actual usage monthly annual quarterly online app help"
).split()
CHINESE = list(
    "账单支付银行卡退款电表读数供应合同地址搬家扣款发票余额信用费用价格变更安装工程师预约停电燃气用水泄漏紧急密码登录邮箱手机"
)
JAPANESE = (
    "パスワード ログイン 請求書 支払い クレジットカード 返金 メーター 検針 契約 住所 引っ越し 口座振替 "
    "料金 変更 設置 工事 予約 停電 ガス 電気 水道 緊急 メール 電話 更新 解約 割引 明細"
).split()


def article_text(rng: random.Random, locale: str) -> tuple[str, str]:
    if locale == "en":
        words = rng.choices(ENGLISH, k=120)
        return " ".join(words[:6]).capitalize(), " ".join(words)
    if locale == "zh-CN":
        chars = rng.choices(CHINESE, k=240)
        return "".join(chars[:8]), "".join(chars)
    words = rng.choices(JAPANESE, k=80)
    return "の".join(words[:3]), "、".join(words)


def query_text(rng: random.Random) -> str:
    kind = rng.randrange(3)
    if kind == 0:
        return " ".join(rng.choices(ENGLISH, k=rng.randint(2, 4)))
    if kind == 1:
        return "".join(rng.choices(CHINESE, k=rng.randint(2, 5)))
    return rng.choice(JAPANESE)


async def bench(store: Store, n_articles: int, n_queries: int) -> dict:
    tenant = parse_deployment(DEPLOYMENT, "bench").tenant(TENANT)
    rng = random.Random(SEED)
    locales = ["en", "zh-CN", "ja"]
    started = time.perf_counter()
    for i in range(n_articles):
        locale = locales[i % 3]
        title, body = article_text(rng, locale)
        draft = articles.Draft(title=title, body=body, category="help", locale=locale)
        article = await articles.create(store, tenant, draft, actor="bench", role="admin")
        for step in ("submit", "publish"):
            await articles.move(store, tenant, article.id, step, actor="bench", role="admin")
    write_s = time.perf_counter() - started

    queries = [query_text(rng) for _ in range(n_queries)]
    found_counts, find_ms, zunion_ms, ping_ms = [], [], [], []
    keys = Keys(TENANT)
    for query in queries:
        t0 = time.perf_counter()
        found = await articles.find(store, tenant, query, limit=8)
        find_ms.append((time.perf_counter() - t0) * 1000)
        found_counts.append(len(found))
        weighted = {keys.kb_term(t): 1.0 for t in search.query_terms(query, tenant.knowledge.locales)}
        t0 = time.perf_counter()
        async with store.redis.pipeline(transaction=True) as pipe:
            pipe.zunionstore(keys.kb_query("bench"), weighted)
            pipe.zrevrange(keys.kb_query("bench"), 0, search.CANDIDATES - 1, withscores=True)
            pipe.delete(keys.kb_query("bench"))
            await pipe.execute()
        zunion_ms.append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        await store.redis.ping()
        ping_ms.append((time.perf_counter() - t0) * 1000)
    for values in (find_ms, zunion_ms, ping_ms):
        values.sort()

    def summary(values: list[float]) -> dict:
        return {"p50_ms": round(percentile(values, 50), 3), "p99_ms": round(percentile(values, 99), 3)}

    find, zunion, ping = summary(find_ms), summary(zunion_ms), summary(ping_ms)
    return {
        "articles": n_articles,
        "steps_per_s": round(3 * n_articles / write_s, 1),  # create, submit, publish
        "queries": n_queries,
        "found_on_average": round(sum(found_counts) / len(found_counts), 2),
        "find": find,
        "ranking": zunion,
        "ping": ping,
        "find_over_ranking_p50": round(find["p50_ms"] / zunion["p50_ms"], 2) if zunion["p50_ms"] else None,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench knowledge", description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=positive, default=2000)
    parser.add_argument("--queries", type=positive, default=500)
    parser.add_argument("--redis-url", default="", help="an empty Redis to use instead of starting one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    async def run(url: str) -> dict:
        store = connect(Settings(redis_url=url))
        try:
            return await bench(store, args.articles, args.queries)
        finally:
            await store.close()

    if args.redis_url:
        result = asyncio.run(run(args.redis_url))
    else:
        with RedisServer() as server:
            result = asyncio.run(run(server.url))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"wrote {result['articles']} articles: {result['steps_per_s']} workflow steps/s")
        print(f"{result['queries']} searches, {result['found_on_average']} articles found on average")
        for name in ("find", "ranking", "ping"):
            print(f"  {name:<12} p50 {result[name]['p50_ms']:>7} ms   p99 {result[name]['p99_ms']:>7} ms")
        print(f"  find / ranking alone (p50): {result['find_over_ranking_p50']}")
    return 0
