"""Inbox accounts: Argon2 hashes, memberships checked against the deployment,
lock-out after repeated wrong passwords, and the `contactrouter user` commands."""

from __future__ import annotations

import argparse
import time

import pytest

from router.app.inbox import accounts
from router.app.inbox import cli as user_cli
from router.keys import AccountKeys
from tests.factories import world
from tests.router.test_inbox_pages import cheap_hashes  # noqa: F401 - autouse: the same Argon2id, cheaper

TWO_TENANTS = """
[[tenants]]
id = "acme"
[[tenants.queues]]
id = "support"
[[tenants.agents]]
id = "amy"
[[tenants.agents]]
id = "zoe"

[[tenants]]
id = "globex"
[[tenants.queues]]
id = "sales"
[[tenants.agents]]
id = "gus"
"""
PASSWORD = "correct horse battery"


async def test_a_password_is_stored_only_as_an_argon2id_hash() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    record = await w.store.redis.hgetall(AccountKeys.user("amy"))
    assert record[b"hash"].startswith(b"$argon2id$")
    assert PASSWORD.encode() not in b"".join(record.values())
    user = await accounts.authenticate(w.store, "AMY ", PASSWORD)  # logins are case-insensitive
    assert user.login == "amy" and user.agent_in("acme") == "amy" and user.tenants(w.deployment) == ["acme"]


async def test_an_account_needs_a_long_password_a_known_role_and_an_agent() -> None:
    w = await world(TWO_TENANTS)
    with pytest.raises(accounts.AccountError, match="at least 10"):
        await accounts.add(w.store, "amy", "short", "agent", {"acme": "amy"})
    with pytest.raises(accounts.AccountError, match="role"):
        await accounts.add(w.store, "amy", PASSWORD, "root", {"acme": "amy"})
    with pytest.raises(accounts.AccountError, match="needs at least one"):
        await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": ""})
    with pytest.raises(accounts.AccountError, match="login"):
        await accounts.add(w.store, "amy smith", PASSWORD, "agent", {"acme": "amy"})
    assert await accounts.all_users(w.store) == []


async def test_memberships_name_real_tenants_and_agents() -> None:
    w = await world(TWO_TENANTS)
    assert accounts.parse_memberships(w.deployment, ["acme:amy", "globex:gus"]) == {"acme": "amy", "globex": "gus"}
    assert accounts.parse_memberships(w.deployment, [], ["globex"]) == {"globex": ""}
    with pytest.raises(accounts.AccountError, match="no tenant 'initech'"):
        accounts.parse_memberships(w.deployment, ["initech:amy"])
    with pytest.raises(accounts.AccountError, match="no agent 'gus' in tenant 'acme'"):
        accounts.parse_memberships(w.deployment, ["acme:gus"])


async def test_a_login_is_created_once() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    with pytest.raises(accounts.AccountError, match="exists"):
        await accounts.add(w.store, "amy", "another password", "agent", {"acme": "amy"})
    await accounts.authenticate(w.store, "amy", PASSWORD)  # the first password still holds


async def test_wrong_login_and_wrong_password_fail_alike() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    with pytest.raises(accounts.LoginFailed) as wrong_password:
        await accounts.authenticate(w.store, "amy", "not the password")
    with pytest.raises(accounts.LoginFailed) as wrong_login:
        await accounts.authenticate(w.store, "nobody", PASSWORD)
    assert str(wrong_password.value) == str(wrong_login.value) == "wrong login or password"


async def test_five_wrong_passwords_lock_the_login_even_against_the_right_one() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    for _ in range(accounts.MAX_FAILURES - 1):
        with pytest.raises(accounts.LoginFailed) as failed:
            await accounts.authenticate(w.store, "amy", "guess")
        assert not failed.value.locked_until
    with pytest.raises(accounts.LoginFailed) as failed:
        await accounts.authenticate(w.store, "amy", "guess")
    assert failed.value.locked_until >= time.time() + accounts.LOCK_SECONDS - 5
    with pytest.raises(accounts.LoginFailed):
        await accounts.authenticate(w.store, "amy", PASSWORD)
    await accounts.unlock(w.store, "amy")
    assert (await accounts.authenticate(w.store, "amy", PASSWORD)).login == "amy"


@pytest.mark.e2e  # seconds: a deliberately slow Argon2 verification per attempt
async def test_an_unknown_login_is_locked_after_as_many_failures_as_a_known_one() -> None:
    w = await world(TWO_TENANTS)
    for name in ("nobody", "not a valid login!"):
        for _ in range(accounts.MAX_FAILURES - 1):
            with pytest.raises(accounts.LoginFailed) as failed:
                await accounts.authenticate(w.store, name, PASSWORD)
            assert not failed.value.locked_until
        with pytest.raises(accounts.LoginFailed) as failed:
            await accounts.authenticate(w.store, name, PASSWORD)
        assert failed.value.locked_until >= time.time() + accounts.LOCK_SECONDS - 5
        with pytest.raises(accounts.LoginFailed) as failed:
            await accounts.authenticate(w.store, name.upper(), PASSWORD)
        assert failed.value.locked_until and str(failed.value) == "locked"


async def test_failure_counters_of_unknown_logins_expire() -> None:
    w = await world(TWO_TENANTS)
    with pytest.raises(accounts.LoginFailed):
        await accounts.authenticate(w.store, "x" * 5000, PASSWORD)
    keys = [k async for k in w.store.redis.scan_iter(match=AccountKeys.base + ":attempts:*")]
    assert len(keys) == 1 and len(keys[0]) < 100  # a digest, however long the name typed
    assert 0 < await w.store.redis.ttl(keys[0]) <= accounts.LOCK_SECONDS


@pytest.mark.e2e  # seconds: a deliberately slow Argon2 verification per attempt
async def test_every_attempt_costs_one_verification_known_or_not_locked_or_not(monkeypatch) -> None:
    """The answer takes as long whether the login exists or is locked: the hash is always checked."""
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    verified: list[str] = []
    hasher = accounts.HASHER

    class Counting:
        def verify(self, digest: str, password: str) -> bool:
            verified.append(password)
            return hasher.verify(digest, password)

    monkeypatch.setattr(accounts, "HASHER", Counting())
    for name in ("amy", "nobody"):
        for _ in range(accounts.MAX_FAILURES + 2):
            with pytest.raises(accounts.LoginFailed):
                await accounts.authenticate(w.store, name, "guess")
    assert len(verified) == 2 * (accounts.MAX_FAILURES + 2)


async def test_a_parallel_burst_of_guesses_is_judged_no_more_often_than_the_lock_out_allows() -> None:
    """40 guesses at once, the right password last: each is counted before it is judged,
    so only MAX_FAILURES get an answer, the rest are refused as locked, and the right one
    does not get in."""
    import asyncio

    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    guesses = [f"guess number {n}" for n in range(39)] + [PASSWORD]
    results = await asyncio.gather(
        *(accounts.authenticate(w.store, "amy", guess) for guess in guesses), return_exceptions=True
    )
    assert not any(isinstance(r, accounts.User) for r in results), "the right password got in"
    assert all(isinstance(r, accounts.LoginFailed) for r in results)
    judged = [r for r in results if not r.locked_until]
    assert len(judged) <= accounts.MAX_FAILURES - 1  # the MAX_FAILURES-th failure locks as it answers
    with pytest.raises(accounts.LoginFailed) as failed:
        await accounts.authenticate(w.store, "amy", PASSWORD)
    assert failed.value.locked_until


async def test_attempts_refused_by_a_lock_do_not_count_towards_the_next_one() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    for _ in range(accounts.MAX_FAILURES):
        with pytest.raises(accounts.LoginFailed):
            await accounts.authenticate(w.store, "amy", "guess")
    for _ in range(accounts.MAX_FAILURES + 3):  # the owner keeps trying while locked
        with pytest.raises(accounts.LoginFailed) as failed:
            await accounts.authenticate(w.store, "amy", PASSWORD)
        assert failed.value.locked_until
    attempts = [k async for k in w.store.redis.scan_iter(match=AccountKeys.base + ":attempts:*")]
    await w.store.redis.hset(attempts[0], "locked_until", str(time.time() - 1))  # the lock ran out
    await w.store.redis.hset(AccountKeys.user("amy"), "locked_until", str(time.time() - 1))
    assert (await accounts.authenticate(w.store, "amy", PASSWORD)).login == "amy"


async def test_a_right_password_resets_the_failure_count() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    for _ in range(accounts.MAX_FAILURES - 1):
        with pytest.raises(accounts.LoginFailed):
            await accounts.authenticate(w.store, "amy", "guess")
    await accounts.authenticate(w.store, "amy", PASSWORD)
    with pytest.raises(accounts.LoginFailed) as failed:
        await accounts.authenticate(w.store, "amy", "guess")
    assert not failed.value.locked_until


async def test_a_lock_expires_by_itself() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    await w.store.redis.hset(AccountKeys.user("amy"), "locked_until", str(time.time() - 1))
    assert (await accounts.authenticate(w.store, "amy", PASSWORD)).login == "amy"


async def test_a_new_password_replaces_the_old_one() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    await accounts.set_password(w.store, "amy", "a brand new passphrase")
    with pytest.raises(accounts.LoginFailed):
        await accounts.authenticate(w.store, "amy", PASSWORD)
    await accounts.authenticate(w.store, "amy", "a brand new passphrase")


async def test_user_commands_add_list_change_and_unlock(monkeypatch, capsys) -> None:
    w = await world(TWO_TENANTS)
    monkeypatch.setenv(user_cli.PASSWORD_ENV, PASSWORD)

    def args(action: str, **fields) -> argparse.Namespace:
        defaults = {"agent": [], "tenant": [], "role": "agent", "name": ""}
        return argparse.Namespace(user_action=action, **{**defaults, **fields})

    await user_cli.command(w.store, w.deployment, args("add", login="amy", agent=["acme:amy", "globex:gus"]))
    await user_cli.command(w.store, w.deployment, args("add", login="sue", role="supervisor", tenant=["acme"]))
    await user_cli.command(w.store, w.deployment, args("list"))
    out = capsys.readouterr().out
    assert "amy  agent  acme:amy, globex:gus" in out and "sue  supervisor  acme" in out
    assert PASSWORD not in out

    monkeypatch.setenv(user_cli.PASSWORD_ENV, "the second password")
    await user_cli.command(w.store, w.deployment, args("passwd", login="amy"))
    await accounts.authenticate(w.store, "amy", "the second password")

    await w.store.redis.hset(AccountKeys.user("amy"), "locked_until", str(time.time() + 600))
    await user_cli.command(w.store, w.deployment, args("list"))
    assert "LOCKED" in capsys.readouterr().out
    await user_cli.command(w.store, w.deployment, args("unlock", login="amy"))
    await accounts.authenticate(w.store, "amy", "the second password")


async def test_user_add_refuses_an_unknown_agent_and_stores_nothing(monkeypatch) -> None:
    w = await world(TWO_TENANTS)
    monkeypatch.setenv(user_cli.PASSWORD_ENV, PASSWORD)
    a = argparse.Namespace(user_action="add", login="amy", agent=["acme:nobody"], tenant=[], role="agent", name="")
    with pytest.raises(accounts.AccountError, match="no agent 'nobody'"):
        await user_cli.command(w.store, w.deployment, a)
    assert await accounts.get(w.store, "amy") is None


def test_the_cli_parses_user_commands() -> None:
    from router.app import cli

    a = cli._parser().parse_args(["user", "add", "amy", "--role", "agent", "--agent", "acme:amy"])
    assert (a.command, a.user_action, a.login, a.agent) == ("user", "add", "amy", ["acme:amy"])
