"""Every Redis key and stream name, built in one place.

All keys of one shard share the hash tag ``{shard}``: multi-key commands and Lua
scripts stay inside one cluster slot, so the same code runs on one Redis and on
Redis Cluster. The shard is the tenant.
"""

from __future__ import annotations

PREFIX = "cr"
PROVIDER_ID_TTL_S = 30 * 24 * 3600

# Consumer groups
ROUTING_GROUP = "routing"
DISPATCH_GROUP = "dispatch"

# The embedded store's sandbox Twilio token (`contactrouter up` generates it), read by
# `contactrouter simulate` in another terminal to sign its webhooks.
SANDBOX_TWILIO_TOKEN = f"{PREFIX}:sandbox:twilio-token"


class Keys:
    """The keyspace of one shard (one tenant)."""

    __slots__ = ("base", "shard")

    def __init__(self, shard: str) -> None:
        self.shard = shard
        self.base = f"{PREFIX}:{{{shard}}}"

    # streams
    @property
    def inbound(self) -> str:
        return f"{self.base}:inbound"

    @property
    def outbound(self) -> str:
        return f"{self.base}:outbound"

    @property
    def events(self) -> str:
        return f"{self.base}:events"

    @property
    def dead(self) -> str:
        return f"{self.base}:dead"

    @property
    def outbox(self) -> str:
        """The sandbox transport's outbox: what would have been sent."""
        return f"{self.base}:outbox"

    # idempotency
    def seen(self, scope: str, provider_id: str) -> str:
        return f"{self.base}:seen:{scope}:{provider_id}"

    # customers and conversations
    @property
    def identities(self) -> str:
        return f"{self.base}:ident"

    def customer(self, customer_id: str) -> str:
        return f"{self.base}:cust:{customer_id}"

    def customer_conversations(self, customer_id: str) -> str:
        return f"{self.base}:cust:{customer_id}:convs"

    def conversation(self, conversation_id: str) -> str:
        return f"{self.base}:conv:{conversation_id}"

    def conversation_log(self, conversation_id: str) -> str:
        return f"{self.base}:conv:{conversation_id}:log"

    @property
    def threads(self) -> str:
        """Email Message-ID -> conversation id."""
        return f"{self.base}:threads"

    # routing
    def waiting(self, queue: str) -> str:
        return f"{self.base}:q:{queue}:wait"

    def waiting_on(self, queue: str, channel: str) -> str:
        """The same waiting conversations, one set per channel (what routing scans)."""
        return f"{self.base}:q:{queue}:wait:{channel}"

    def members(self, queue: str, level: int) -> str:
        """Agents a queue's target selects at an escalation level, scored by proficiency."""
        return f"{self.base}:q:{queue}:m:{level}"

    @property
    def queues(self) -> str:
        """Queue id -> JSON of the routing settings the Lua scripts need."""
        return f"{self.base}:queues"

    @property
    def agents(self) -> str:
        return f"{self.base}:agents"

    def agent(self, agent_id: str) -> str:
        return f"{self.base}:agent:{agent_id}"

    def agent_queues(self, agent_id: str) -> str:
        return f"{self.base}:agent:{agent_id}:queues"

    def agent_work(self, agent_id: str) -> str:
        return f"{self.base}:agent:{agent_id}:work"

    def ready(self, channel: str) -> str:
        return f"{self.base}:ready:{channel}"

    def reservation(self, reservation_id: str) -> str:
        return f"{self.base}:res:{reservation_id}"

    @property
    def timers(self) -> str:
        return f"{self.base}:timers"

    @property
    def retries(self) -> str:
        """Outbound messages waiting for their next attempt, scored by due time."""
        return f"{self.base}:retries"

    def delivery(self, message_id: str) -> str:
        return f"{self.base}:msg:{message_id}"

    def provider_message(self, provider_id: str) -> str:
        """A provider's message id (Twilio's MessageSid) -> our message id, for status
        callbacks; kept for PROVIDER_ID_TTL_S, long past any report a provider sends."""
        return f"{self.base}:provider:{provider_id}"

    @property
    def abandons_pending(self) -> str:
        """Calls that ended before routing opened their conversation, by end time."""
        return f"{self.base}:voice:abandon-pending"

    def call(self, call_sid: str) -> str:
        """A phone call (Twilio CallSid): its conversation, contact and progress."""
        return f"{self.base}:call:{call_sid}"

    def suppression(self, channel: str) -> str:
        """Addresses that opted out of a channel (SMS STOP); nothing is ever sent to them."""
        return f"{self.base}:suppress:{channel}"


def shard_of(key: str) -> str:
    """The shard named by a key's hash tag."""
    start = key.index("{") + 1
    return key[start : key.index("}", start)]
