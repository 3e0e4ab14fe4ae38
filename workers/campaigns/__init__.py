"""Outbound campaigns (collections, cross-selling, notices): the `campaigns` process.

The campaign itself (model, render, compliance, registry) is the core's: router/campaigns/.

audience.py    streaming CSV import (E.164, email checks, rejected rows with their line)
pacing.py      token buckets shared by every worker
scripts.py     calls of the Lua scripts (router/lua/campaigns): claim with a lease, send at
               most once, settle, count
ids.py         the ids of a campaign's messages, conversations and variant stats
worker.py      the role: claim, check, render, publish (at most once per attempt)
gate.py        every rule again as a message leaves, in the dispatcher's lease (held or refused)
results.py     delivery, replies, dispositions from the events stream; fallback channel;
               the results report per campaign and A/B variant
unsubscribe.py List-Unsubscribe: the mailto: the smtp process honours, one-click (RFC 8058) on the web process
cli.py         `contactrouter campaign ...`
"""
