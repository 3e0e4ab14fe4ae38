"""From the inbound stream into routing: each contact joins or opens a conversation."""

from __future__ import annotations

import datetime as dt
import logging
from typing import NamedTuple

import msgspec

from router import assign, atomic, bus, events, language, logcontext, names, revocations, scripts, surveys
from router.atomic import IntakeArgs, IntakeBatch
from router.bus import Entry
from router.config import Deployment, Tenant
from router.customers import InvalidAddress, identity, normalise
from router.errors import ContactRouterError, UnknownTenant
from router.keys import ROUTING_GROUP, Keys, shard_of
from router.store import Store, text

log = logging.getLogger(__name__)


class IntakeFailed(RuntimeError):
    """Redis refused one contact's intake (its error); the entry stays pending, for redelivery."""


class Unroutable(ContactRouterError, ValueError):
    """A contact that can never be routed (bad payload, unknown tenant); it is dead-lettered."""


def with_language(contact: events.InboundContact) -> events.InboundContact:
    """The contact with the customer's language: as the channel gave it, else detected from
    what they wrote, else their browser's (a new conversation keeps it; routing may pick its
    queue by it). Words come before the browser: a Cantonese speaker's browser says zh-HK."""
    if contact.language:
        return contact
    found = language.detect(contact.body) if contact.body else ""
    found = found or contact.metadata.get(events.BROWSER_LANGUAGE, "")
    return msgspec.structs.replace(contact, language=found) if found else contact


def pick_queue(tenant: Tenant, contact: events.InboundContact, when: dt.datetime) -> tuple[str, bool]:
    """The queue a new contact enters, and whether it arrived after hours."""
    queue_ids = {q.id for q in tenant.queues}
    queue_id = contact.queue if contact.queue in queue_ids else tenant.entry_queue(contact.channel, contact.language)
    queue = tenant.queue(queue_id)
    if queue.hours is None or queue.hours.is_open(when):
        return queue_id, False
    if queue.after_hours.action == "overflow":
        return queue.after_hours.queue, True
    return queue_id, True


def _intake_args(tenant: Tenant, contact: events.InboundContact, queue_id: str, entry_id: str) -> IntakeArgs:
    address = normalise(contact.channel, contact.address)
    name = names.clean(contact.name)
    queue = tenant.queue(queue_id)
    priority = contact.priority if contact.priority is not None else queue.priority
    entry = events.HistoryEntry(
        id=contact.id,
        kind="in",
        channel=contact.channel,
        occurred_at=contact.occurred_at,
        body=contact.body,
        subject=contact.subject,
        address=address,
        name=name,
        attachments=contact.attachments,
        contact_kind=contact.kind,
        metadata=contact.metadata,
    )
    return IntakeArgs(
        contact=contact.id,
        ident=identity(contact.channel, address),
        channel=contact.channel,
        queue=queue_id,
        priority=priority,
        enqueued_at=contact.original_at or contact.occurred_at,
        entry=msgspec.msgpack.encode(entry),
        provider_id=contact.provider_id,
        address=address,
        refs="\n".join(contact.thread),
        own_ref=contact.provider_id if contact.channel == "email" else "",
        tenant_address=contact.to,
        kind=contact.kind,
        name=name,
        language=contact.language,
        entry_id=entry_id,
    )


class Routed(NamedTuple):
    """What route_batch did with a batch. Entries, not ids: two tenants' streams can hold the same id."""

    done: set[Entry]  # stored (intake acknowledges those itself), passed over, or dead-lettered
    passed_over: set[Entry]  # of those, stored before: by a call whose answer was lost, or by another worker


class _Work(NamedTuple):
    entry: Entry
    tenant: Tenant
    contact: events.InboundContact
    after_hours: bool
    args: IntakeArgs


async def route_batch(store: Store, deployment: Deployment, entries: list[Entry], dead_letter, consumer: str) -> Routed:
    """Take a batch of inbound entries, which `consumer` of the routing group read, into routing."""
    done: set[Entry] = set()
    passed_over: set[Entry] = set()
    work: list[_Work] = []
    senders: set[tuple[str, str, str]] = set()  # (tenant, channel, address) of the contacts in `work`
    for entry in entries:
        try:
            contact = with_language(events.decode_inbound(entry.payload))
            tenant = deployment.tenant(contact.tenant)
            if shard_of(entry.stream) != tenant.id:
                raise Unroutable(f"contact of tenant {tenant.id} on {entry.stream}")
            queue_id, after_hours = pick_queue(tenant, contact, dt.datetime.now(dt.UTC))
            args = _intake_args(tenant, contact, queue_id, entry.id)
        except (
            msgspec.ValidationError,
            msgspec.DecodeError,
            KeyError,
            UnknownTenant,
            InvalidAddress,
            Unroutable,
        ) as exc:
            await dead_letter(entry, f"unroutable: {exc}")
            done.add(entry)
            continue
        sender = (tenant.id, contact.channel, contact.address)
        # a digit after another message of the same batch answers that message's new conversation
        if tenant.survey is not None and surveys.rating_of(contact.body) is not None and sender not in senders:
            answered = await _survey_answer(store, tenant, contact, entry, consumer)
            if answered == "failed":
                continue
            if answered is not None:
                done.add(entry)
                if answered == "duplicate":
                    passed_over.add(entry)
                continue
        senders.add(sender)
        work.append(_Work(entry, tenant, contact, after_hours, args))
    if not work:
        return Routed(done, passed_over)
    # Before the contacts are stored (and their entries acknowledged): a crash in between
    # leaves a flag for a message routing then stores on redelivery, never a stored message
    # whose revocation nobody is asked about.
    flags = [(item.tenant.id, flag) for item in work if (flag := revocations.flag_of(item.contact))]
    await revocations.raise_flags(store, flags)
    results, full = await _intake_all(store, work, consumer)
    for (entry, tenant, contact, after_hours, _args), result in zip(work, results, strict=True):
        # Every line logged about this contact names it, its tenant and, once known, its conversation.
        with logcontext.about(tenant=tenant.id, contact=contact.id):
            if isinstance(result, Exception):
                log.error("intake of %s failed: %s", entry.id, result)
                continue
            outcome, conversation, _customer, queue_id = (text(r) for r in result)
            logcontext.bind(conversation=conversation)
            done.add(entry)
            if outcome == "duplicate":
                passed_over.add(entry)
                if any(q.hours is not None for q in tenant.queues):
                    # The client sends a call again when its answer was lost: the first run stored
                    # this contact and the answer saying it opened a conversation never came. A
                    # conversation this contact opened has the contact's id (intake.lua); whether
                    # it came after hours is decided as of when it was stored (a worker passing
                    # over another's entry may read its clock on the other side of opening time).
                    created = await store.redis.hget(Keys(tenant.id).conversation(contact.id), "created_at")
                    if created:
                        when = dt.datetime.fromtimestamp(int(created) / 1000, dt.UTC)
                        queue_id, after_hours = pick_queue(tenant, contact, when)
                        conversation, outcome = contact.id, "new"
            if outcome == "new" and after_hours and tenant.queue(queue_id).after_hours.action == "autoreply":
                await _auto_reply(store, tenant, contact, conversation, queue_id)
    for tenant_id, queue_id in full:
        # A round examines LOOKAHEAD waiting conversations and a batch can queue more
        # than that: offer again while a round reserved every conversation it examined.
        while len(await assign.assign_queue(store, tenant_id, queue_id)) >= assign.LOOKAHEAD:
            pass
    return Routed(done, passed_over)


async def _survey_answer(
    store: Store, tenant: Tenant, contact: events.InboundContact, entry: Entry, consumer: str
) -> str | None:
    """A bare 1-5 from a customer a survey waits on is its answer, recorded and acknowledged
    in one step: "rated", or "duplicate" (recorded before); "failed" leaves the entry pending,
    for redelivery. None: an ordinary message after all (no survey waits, it expired, the
    customer wrote again), routed as any other."""
    try:
        outcome = await surveys.answer_text(
            store, tenant, contact, entry_id=entry.id, group=ROUTING_GROUP, consumer=consumer
        )
    except Exception:  # its entry stays pending: redelivered, as a contact whose intake failed
        log.exception("survey answer %s of %s failed", entry.id, tenant.id)
        return "failed"
    return outcome if outcome in ("rated", "duplicate") else None


async def _intake_all(store: Store, work: list[_Work], consumer: str) -> tuple[list, list[tuple[str, str]]]:
    """Run every contact's intake in one round trip: each shard's contacts go in one
    intake call, which ends with an offer round on each queue it left conversations
    waiting in.

    Returns each contact's result (or error), and the (tenant, queue) pairs whose
    round was full (there may be more to offer).
    """
    shards: dict[str, list[int]] = {}
    for index, item in enumerate(work):
        shards.setdefault(item.tenant.id, []).append(index)
    calls = [_intake_call(store, t, [work[i].args for i in idx], consumer) for t, idx in shards.items()]
    replies = await scripts.run_pipelined(store.redis, calls)
    results: list = [None] * len(work)
    full: list[tuple[str, str]] = []
    for (tenant_id, indexes), reply in zip(shards.items(), replies, strict=True):
        if isinstance(reply, Exception):  # the call as a whole: none of its contacts is done
            per_contact = [reply] * len(indexes)
        else:
            per_contact, rounds = reply
            for queue, made, error in rounds:
                if error:
                    # Its contacts are stored and wait in the queue: the queue's next round
                    # (a contact arriving, an agent with room, a timer) offers them.
                    log.error("offer round on %s/%s failed: %s", tenant_id, text(queue), text(error))
                elif int(made) >= assign.LOOKAHEAD:
                    full.append((tenant_id, text(queue)))
        for index, result in zip(indexes, per_contact, strict=True):
            # a contact that failed alone (intake.lua catches each one's error)
            if not isinstance(result, Exception) and text(result[0]) == "error":
                result = IntakeFailed(text(result[1]))
            results[index] = result
    return results, full


def _intake_call(store: Store, tenant: str, contacts: list[IntakeArgs], consumer: str) -> scripts.Call:
    """One intake.lua call for contacts of one shard, which `consumer` of the routing group read."""
    ids = [contact.entry_id for contact in contacts]
    batch = IntakeBatch(
        count=len(contacts),
        group=ROUTING_GROUP,
        consumer=consumer,
        lookahead=assign.LOOKAHEAD,
        lowest=min(ids, key=_id_key),
        highest=max(ids, key=_id_key),
    )
    return atomic.intake_call(store, tenant, batch, contacts)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


async def _auto_reply(
    store: Store, tenant: Tenant, contact: events.InboundContact, conversation: str, queue_id: str
) -> None:
    if contact.metadata.get("auto_submitted"):  # never answer an automatic message
        return
    message = events.OutboundMessage(
        id=f"{contact.id}.autoreply",  # one per contact, whoever runs this again
        tenant=tenant.id,
        channel=contact.channel,
        to=normalise(contact.channel, contact.address),
        occurred_at=events.now_ms(),
        conversation=conversation,
        body=tenant.queue(queue_id).after_hours.message,
        automatic=True,
    )
    # A command replayed after a lost answer, or a redelivered batch, appends nothing twice.
    await bus.publish(store, Keys(tenant.id).outbound, message, dedup=f"autoreply:{contact.id}")
