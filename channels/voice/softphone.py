"""The agents' softphone: Twilio's Voice JavaScript SDK in the inbox, or, for a tenant
without a Twilio account, a simulated call (channels.voice.simulated).

An agent without a phone takes calls in the browser as the Twilio Client named
`client_identity(agent)`: the wait loop dials it (<Client>), and callbacks and the
agent's own calls ring it first (client:<identity>, by outbound.VoiceSender). The
browser registers as that identity with an access token signed by the tenant's API
key (`access_token`), which grants incoming calls only: every call the softphone
carries is placed by the router, which checks regions and number types and records
it, so a page can never dial a number of its own choosing.
"""

from __future__ import annotations

from typing import Literal

from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

from router import events
from router.config import Tenant
from router.keys import Keys
from router.store import Store

Mode = Literal["twilio", "simulated", "unavailable"]
TOKEN_TTL_S = 3600  # the SDK asks for a new one before it expires (tokenWillExpire)
CLIENT = "client:"  # a call's To for a Twilio Client
DIAL = "dial"  # OutboundMessage.metadata["action"] of a call an agent places to a customer


def client_identity(agent: str) -> str:
    """The Twilio Client name an agent's softphone registers as, and the one calls dial."""
    return agent


def mode(tenant: Tenant) -> Mode:
    """How the tenant's agents take calls in the browser: Twilio's SDK (an account with
    an API key), a simulated call (no account: the sandbox), or not at all (an account
    without an API key: `config check` warns of agents left without a way to answer)."""
    if tenant.twilio is None:
        return "simulated"
    return "twilio" if tenant.twilio.softphone else "unavailable"


def phone_of(tenant: Tenant, agent: str) -> str:
    return next((a.phone for a in tenant.agents if a.id == agent), "")


def access_token(tenant: Tenant, agent: str, ttl_s: int = TOKEN_TTL_S) -> str:
    """A JWT for Twilio.Device: the agent's identity, allowed incoming calls, signed
    with the tenant's API key secret (HS256)."""
    account = tenant.twilio
    if account is None or account.api_key_sid is None or not account.api_key_secret:
        raise ValueError(f"tenant {tenant.id} has no Twilio API key for the softphone")
    token = AccessToken(
        account.account_sid, account.api_key_sid, account.api_key_secret, identity=client_identity(agent), ttl=ttl_s
    )
    token.add_grant(VoiceGrant(incoming_allow=True))
    return token.to_jwt()


async def placed(store: Store, tenant: Tenant, agent: str, sid: str) -> events.OutboundMessage | None:
    """The callback or agent's call whose leg to the agent is the CallSid `sid`, if the
    router placed it for this agent: what the page shows of a call Twilio rings without
    the parameters a <Client> dial carries."""
    keys = Keys(tenant.id)
    message_id = await store.redis.get(keys.provider_message(sid))
    if message_id is None:
        return None
    payload = await store.redis.hget(keys.delivery(message_id.decode()), "payload")
    message = events.decode_outbound(payload) if payload else None
    if message is None or message.channel != "voice" or message.metadata.get("agent") != agent:
        return None
    return message
