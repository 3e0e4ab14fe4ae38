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
CAMPAIGNS_GROUP = "campaigns"  # follows the events stream for campaign results
ARCHIVE_GROUP = "archive"  # follows the events stream into the system of record (PostgreSQL)

# The embedded store's sandbox Twilio token (`contactrouter up` generates it), read by
# `contactrouter simulate` in another terminal to sign its webhooks.
SANDBOX_TWILIO_TOKEN = f"{PREFIX}:sandbox:twilio-token"
# Where the web process of `contactrouter up` listens (http://host:port), kept in its embedded
# store so that `contactrouter simulate` in another terminal finds it without PORT exported.
UP_WEB_URL = f"{PREFIX}:sandbox:web-url"

# The secret web chat visitor tokens are signed with, when WEBCHAT_SECRET is not set:
# the first web process generates it and every web process reads it from here.
WEBCHAT_SECRET = f"{PREFIX}:webchat:secret"
WEBCHAT_PREVIOUS_SECRET = f"{PREFIX}:webchat:secret:previous"  # still verifies after a rotation


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

    def conversation_declined(self, conversation_id: str) -> str:
        """Agents who declined (or missed) the conversation's offer, scored by when."""
        return f"{self.base}:conv:{conversation_id}:declined"

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

    def conference(self, conversation_id: str) -> str:
        """The Twilio Conference a conversation's call is bridged in (hash): its name and
        ConferenceSid, and each participant's CallSid as `p:<CallSid>` -> role and state."""
        return f"{self.base}:conf:{conversation_id}"

    def recording(self, recording_sid: str) -> str:
        """A call recording (Twilio RecordingSid, hash): its conversation, call, state, URL."""
        return f"{self.base}:rec:{recording_sid}"

    @property
    def recordings(self) -> str:
        """Every call recording kept, by when it began (sorted set): what retention deletes."""
        return f"{self.base}:recs"

    def conversation_recordings(self, conversation_id: str) -> str:
        """The RecordingSids of a conversation's calls (sorted set, by when each began)."""
        return f"{self.base}:conv-recs:{conversation_id}"

    def consult(self, conversation_id: str) -> str:
        """A warm transfer under way (hash): the colleague's consultation leg and whom it calls."""
        return f"{self.base}:consult:{conversation_id}"

    def voice_handled(self, queue: str) -> str:
        """A queue's latest measured call handle times in ms (list, newest first): the
        expected-wait estimate's handle time."""
        return f"{self.base}:q:{queue}:voice-handled"

    def softphone(self, agent_id: str) -> str:
        """The simulated calls of an agent's softphone (a tenant without Twilio), by start (zset)."""
        return f"{self.base}:softphone:{agent_id}"

    def suppression(self, channel: str) -> str:
        """Addresses that opted out of a channel (SMS STOP); nothing is ever sent to them."""
        return f"{self.base}:suppress:{channel}"

    @property
    def fax_routes(self) -> str:
        """A customer's fax number (E.164) -> the gateway their last fax came through,
        so a reply leaves by the same gateway."""
        return f"{self.base}:fax:routes"

    def webchat_visitor(self, visitor: str) -> str:
        """A web chat visitor's state: pre-chat answers, read marks."""
        return f"{self.base}:webchat:v:{visitor}"

    def webchat_history(self, visitor: str) -> str:
        """A web chat visitor's transcript stream (both ways), replayed to every tab that connects."""
        return f"{self.base}:webchat:v:{visitor}:log"

    @property
    def webchat_live(self) -> str:
        """What the tenant's open chat tabs must see now (messages, typing, read marks); every
        web process reads it and pushes each entry to its own sockets of that visitor."""
        return f"{self.base}:webchat:live"

    @property
    def webchat_signals(self) -> str:
        """Visitors' typing and read marks, for the agents' inbox."""
        return f"{self.base}:webchat:signals"

    def webchat_rate(self, scope: str, who: str, window: int) -> str:
        """A rate-limit counter: scope (visitor, ip), who, and the minute it counts."""
        return f"{self.base}:webchat:rate:{scope}:{who}:{window}"

    def telegram_updates(self, bot_id: str) -> str:
        """update_ids a Telegram bot delivered and we stored, scored by when (a bounded
        window): a redelivered update is dropped by membership, whatever its order."""
        return f"{self.base}:telegram:{bot_id}:updates"

    def telegram_poller(self, bot_id: str) -> str:
        """The lease of the one `telegram` process polling a bot (Telegram allows one)."""
        return f"{self.base}:telegram:{bot_id}:poller"

    def imap_fetcher(self, mailbox: str) -> str:
        """The lease of the one `imap` process fetching a mailbox (channels.email.imap)."""
        return f"{self.base}:imap:{mailbox}:fetcher"

    def worker_alive(self, role: str) -> str:
        """A worker of the role serves this tenant: set by each one's heartbeat, expiring
        soon after the last (ops/health.py), holding the name of the one that beat last."""
        return f"{self.base}:alive:{role}"

    def agent_read(self, agent_id: str) -> str:
        """Conversation -> when the agent last read it (ms): the inbox's unread marks."""
        return f"{self.base}:agent:{agent_id}:read"

    # reports (ops/reports.py, ops/rollups.py)
    @property
    def report_days(self) -> str:
        """Daily report rollups: local date (YYYY-MM-DD) -> the day's summable figures (MessagePack)."""
        return f"{self.base}:reports:days"

    @property
    def report_rolled(self) -> str:
        """Rollup marks scored by a day's start (ms): "through", the first day not rolled up yet
        (the events stream is never trimmed past what it still needs), and "since", the first
        day of a history the stream held whole."""
        return f"{self.base}:reports:rolled"

    # outbound campaigns (workers/campaigns)
    @property
    def campaigns(self) -> str:
        """The tenant's campaign ids."""
        return f"{self.base}:cmp"

    @property
    def campaigns_running(self) -> str:
        """Campaigns the campaigns workers are sending (launched, not paused or cancelled)."""
        return f"{self.base}:cmp:running"

    def campaign(self, campaign_id: str) -> str:
        """A campaign: its definition (JSON), state, and audience size."""
        return f"{self.base}:cmp:{campaign_id}"

    def campaign_stats(self, campaign_id: str) -> str:
        """Progress counters: sent, delivered, failed, suppressed, replied, converted..."""
        return f"{self.base}:cmp:{campaign_id}:stats"

    def campaign_audience(self, campaign_id: str) -> str:
        """Recipient number -> the recipient (MessagePack): address, time zone, template fields."""
        return f"{self.base}:cmp:{campaign_id}:aud"

    def campaign_due(self, campaign_id: str) -> str:
        """Recipients still to send, scored by when they may go (a claimed one: its lease's end)."""
        return f"{self.base}:cmp:{campaign_id}:due"

    def campaign_status(self, campaign_id: str) -> str:
        """Recipient number -> what happened to them ("sent:1:sms", "suppressed:dnc", ...)."""
        return f"{self.base}:cmp:{campaign_id}:st"

    def campaign_pending(self, campaign_id: str) -> str:
        """Message ids queued and not yet through the dispatcher (sent, refused, held back):
        a campaign is finished only when there are none, and nobody is due."""
        return f"{self.base}:cmp:{campaign_id}:pending"

    def campaign_dial_figures(self, campaign_id: str) -> str:
        """What the dialler measured of an agent-paced campaign's calls: outcomes, answers,
        ring time, connects and abandons, and answers and abandons per day (30-day rate)."""
        return f"{self.base}:cmp:{campaign_id}:dial"

    def agent_campaign_callbacks(self, agent_id: str) -> str:
        """The campaign conversations an agent is to call back, by when the customer asked."""
        return f"{self.base}:agent:{agent_id}:cmp-callbacks"

    def campaign_agent_figures(self, campaign_id: str) -> str:
        """Per agent of the campaign's conversations: connects, right-party contacts,
        promises and amounts, talk and wrap-up time ("<agent>:<figure>" fields)."""
        return f"{self.base}:cmp:{campaign_id}:agents"

    def campaign_ringing(self, campaign_id: str) -> str:
        """An agent-paced campaign's calls queued or ringing, by when queued (ms)."""
        return f"{self.base}:cmp:{campaign_id}:ringing"

    def campaign_rejects(self, campaign_id: str) -> str:
        """CSV rows the audience import refused: line number -> reason."""
        return f"{self.base}:cmp:{campaign_id}:rej"

    @property
    def do_not_contact(self) -> str:
        """Addresses (E.164, email) nobody may contact on any channel."""
        return f"{self.base}:dnc"

    @property
    def revocations(self) -> str:
        """Identities ("phone:+1...") whose message read like a consent revocation ("please stop
        texting me") that no agent has confirmed or dismissed yet -> the flag (JSON): no
        campaign reaches the person meanwhile (router/consent.py)."""
        return f"{self.base}:revoke"

    @property
    def disputes(self) -> str:
        """Customer ids, and debts ("debt:<account>"), with an open dispute: no collections."""
        return f"{self.base}:disputes"

    def contact_attempts(self, channel: str, subject: str) -> str:
        """A debt's (or address's) campaign attempts on a channel, scored by time: frequency caps."""
        return f"{self.base}:cap:{channel}:{subject}"

    def debt_talked(self, subject: str) -> str:
        """When a conversation with the debtor about a debt last took place (ms)."""
        return f"{self.base}:talked:{subject}"

    def rate_bucket(self, name: str) -> str:
        """A token bucket (tokens, updated) that every campaigns worker of the tenant draws from."""
        return f"{self.base}:bucket:{name}"

    @property
    def campaign_signing_key(self) -> str:
        """The secret that signs the tenant's one-click unsubscribe links."""
        return f"{self.base}:cmp:signing-key"

    @property
    def campaign_previous_signing_keys(self) -> str:
        """The keys that signed those links before a rotation (a list, newest first): still verify."""
        return f"{self.base}:cmp:signing-key:previous"

    # satisfaction surveys (router/surveys.py)
    def survey_day(self, day: str) -> str:
        """The figures of the surveys sent on a local date (YYYY-MM-DD), per queue and agent
        ("q:<queue>:sent", "a:<agent>:r4", ...): counted when sent and when answered."""
        return f"{self.base}:csat:day:{day}"

    @property
    def survey_comments(self) -> str:
        """Survey answers that came with a comment (a stream, newest last, capped)."""
        return f"{self.base}:csat:comments"

    @property
    def survey_followups(self) -> str:
        """Conversations rated low that a supervisor has yet to follow up, scored by when rated."""
        return f"{self.base}:csat:followups"

    @property
    def survey_signing_key(self) -> str:
        """The secret that signs the tenant's email rating links."""
        return f"{self.base}:csat:signing-key"

    @property
    def survey_previous_signing_keys(self) -> str:
        """The keys that signed rating links before a rotation (a list, newest first): still verify."""
        return f"{self.base}:csat:signing-key:previous"


    # the knowledge base (router/knowledge)
    @property
    def kb_articles(self) -> str:
        """The tenant's article ids, scored by when each last changed (ms)."""
        return f"{self.base}:kb:articles"

    def kb_article(self, article_id: str) -> str:
        """An article: title, body, category, locale, status, counters, version."""
        return f"{self.base}:kb:a:{article_id}"

    def kb_history(self, article_id: str) -> str:
        """Who did what to an article and when (a list of JSON entries, oldest first)."""
        return f"{self.base}:kb:a:{article_id}:log"

    def kb_uses(self, article_id: str) -> str:
        """Conversations an agent inserted the article into (its "inserted" count is their number)."""
        return f"{self.base}:kb:a:{article_id}:used"

    def kb_terms(self, article_id: str) -> str:
        """The search terms an article is indexed under, so a new version can leave the old ones."""
        return f"{self.base}:kb:a:{article_id}:terms"

    def kb_term(self, term: str) -> str:
        """The search index: articles holding a term, scored by its weight in each."""
        return f"{self.base}:kb:t:{term}"

    def kb_query(self, token: str) -> str:
        """A search's scratch ranking (ZUNIONSTORE), deleted in the same transaction that made it."""
        return f"{self.base}:kb:q:{token}"

    @property
    def kb_deflected(self) -> str:
        """Contacts the help articles deflected: local date (YYYY-MM-DD) -> count."""
        return f"{self.base}:kb:deflected"


class AccountKeys:
    """The agent inbox's accounts and sessions. They belong to no tenant (one login may
    serve several), so they share a hash tag of their own: one cluster slot."""

    base = f"{PREFIX}:{{accounts}}"
    users = f"{base}:users"  # set of logins

    @classmethod
    def user(cls, login: str) -> str:
        return f"{cls.base}:user:{login}"

    @classmethod
    def user_sessions(cls, login: str) -> str:
        """The session digests of a login, so a password change ends them all."""
        return f"{cls.base}:user:{login}:sessions"

    @classmethod
    def session(cls, digest: str) -> str:
        """A session by the SHA-256 of its cookie: a copy of the store holds no live cookie."""
        return f"{cls.base}:session:{digest}"

    # Login throttling (router/app/inbox/lockout.py): counters keyed by a digest of what was
    # typed and of the client's address, so an odd or long value costs a fixed-size key.
    locks = f"{base}:locks"  # sorted set: every lock and throttle in force, by when it ends
    audit = f"{base}:audit"  # stream: who did what with accounts and personal data (router/app/inbox/audit.py)

    @classmethod
    def attempts(cls, digest: str) -> str:
        """Failed logins of one name from one client (tries, locked_until)."""
        return f"{cls.base}:attempts:{digest}"

    @classmethod
    def name_attempts(cls, digest: str) -> str:
        """Failed logins of one name from any client, and its wrong second-factor codes."""
        return f"{cls.base}:name-attempts:{digest}"

    @classmethod
    def client_failures(cls, digest: str) -> str:
        """One client's failed logins across names: a sorted set, a sliding window."""
        return f"{cls.base}:client-failures:{digest}"

    @classmethod
    def user_clients(cls, login: str) -> str:
        """The clients a login last logged in from (sorted set by time)."""
        return f"{cls.base}:user:{login}:clients"

    # The second factor (router/app/inbox/second_factor.py).
    @classmethod
    def enrolment(cls, login: str) -> str:
        """A TOTP secret shown to its user and not yet confirmed with a code."""
        return f"{cls.base}:user:{login}:enrolment"

    @classmethod
    def recovery_codes(cls, login: str) -> str:
        """The SHA-256 of each unused recovery code."""
        return f"{cls.base}:user:{login}:recovery"

    @classmethod
    def totp_step(cls, login: str) -> str:
        """The last time step whose code was accepted (a sorted set of one, for ZADD GT)."""
        return f"{cls.base}:user:{login}:totp-step"

    @classmethod
    def pending_login(cls, digest: str) -> str:
        """A login whose password was right, waiting for its code, by the SHA-256 of its cookie."""
        return f"{cls.base}:pending:{digest}"


def shard_of(key: str) -> str:
    """The shard named by a key's hash tag."""
    start = key.index("{") + 1
    return key[start : key.index("}", start)]
