"""Inbox accounts: Argon2 hashes, memberships checked against the deployment,
lock-out after repeated wrong passwords, and the `contactrouter user` commands."""

from __future__ import annotations

import argparse
import asyncio
import time

import pyotp
import pytest

from router.app.inbox import accounts, lockout, second_factor
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
HOME = "203.0.113.7"  # where the login's owner logs in from
STRANGER = "198.51.100.9"


async def test_a_password_is_stored_only_as_an_argon2id_hash() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    record = await w.store.redis.hgetall(AccountKeys.user("amy"))
    assert record[b"hash"].startswith(b"$argon2id$")
    assert PASSWORD.encode() not in b"".join(record.values())
    user = await accounts.authenticate(w.store, "AMY ", PASSWORD, client=HOME)  # logins are case-insensitive
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
    await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME)  # the first password still holds


async def test_wrong_login_and_wrong_password_fail_alike() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    with pytest.raises(accounts.LoginFailed) as wrong_password:
        await accounts.authenticate(w.store, "amy", "not the password", client=HOME)
    with pytest.raises(accounts.LoginFailed) as wrong_login:
        await accounts.authenticate(w.store, "nobody", PASSWORD, client=HOME)
    assert str(wrong_password.value) == str(wrong_login.value) == "wrong login or password"


async def fail(w, name: str, client: str, times: int, password: str = "guess", **limits) -> list[float]:
    """`times` wrong attempts; the lock each answer reported (0: none)."""
    locks = []
    for _ in range(times):
        with pytest.raises(accounts.LoginFailed) as failed:
            await accounts.authenticate(w.store, name, password, client=client, **limits)
        locks.append(failed.value.locked_until)
    return locks


async def test_a_strangers_wrong_tries_do_not_stop_the_right_password_from_another_address() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    locks = await fail(w, "amy", STRANGER, accounts.MAX_FAILURES)
    assert locks[-1] and not any(locks[:-1])  # the fifth locks the stranger out of amy
    assert (await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME)).login == "amy"
    with pytest.raises(accounts.LoginFailed) as failed:  # the stranger stays locked, even with the password
        await accounts.authenticate(w.store, "amy", PASSWORD, client=STRANGER)
    assert failed.value.locked_until


async def test_five_wrong_passwords_lock_the_login_even_against_the_right_one() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    for _ in range(accounts.MAX_FAILURES - 1):
        with pytest.raises(accounts.LoginFailed) as failed:
            await accounts.authenticate(w.store, "amy", "guess", client=HOME)
        assert not failed.value.locked_until
    with pytest.raises(accounts.LoginFailed) as failed:
        await accounts.authenticate(w.store, "amy", "guess", client=HOME)
    assert failed.value.locked_until >= time.time() + accounts.LOCK_SECONDS - 5
    with pytest.raises(accounts.LoginFailed):
        await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME)
    await accounts.unlock(w.store, "amy")
    assert (await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME)).login == "amy"


async def test_an_unknown_login_is_locked_after_as_many_failures_as_a_known_one() -> None:
    w = await world(TWO_TENANTS)
    for name in ("nobody", "not a valid login!"):
        for _ in range(accounts.MAX_FAILURES - 1):
            with pytest.raises(accounts.LoginFailed) as failed:
                await accounts.authenticate(w.store, name, PASSWORD, client=HOME)
            assert not failed.value.locked_until
        with pytest.raises(accounts.LoginFailed) as failed:
            await accounts.authenticate(w.store, name, PASSWORD, client=HOME)
        assert failed.value.locked_until >= time.time() + accounts.LOCK_SECONDS - 5
        with pytest.raises(accounts.LoginFailed) as failed:
            await accounts.authenticate(w.store, name.upper(), PASSWORD, client=HOME)
        assert failed.value.locked_until and str(failed.value) == "locked"


async def test_failure_counters_of_unknown_logins_expire() -> None:
    w = await world(TWO_TENANTS)
    with pytest.raises(accounts.LoginFailed):
        await accounts.authenticate(w.store, "x" * 5000, PASSWORD, client=HOME)
    keys = [k async for k in w.store.redis.scan_iter(match=AccountKeys.base + ":attempts:*")]
    assert len(keys) == 1 and len(keys[0]) < 100  # a digest, however long the name typed
    assert 0 < await w.store.redis.ttl(keys[0]) <= accounts.LOCK_SECONDS


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
                await accounts.authenticate(w.store, name, "guess", client=HOME)
    assert len(verified) == 2 * (accounts.MAX_FAILURES + 2)


async def test_a_parallel_burst_of_guesses_is_judged_no_more_often_than_the_lock_out_allows() -> None:
    """40 guesses at once from one client, the right password last: each is counted before
    it is judged, so only MAX_FAILURES get an answer, the rest are refused as locked, and the
    right one does not get in. (The client's own limit is raised: it is the name's that is held.)"""
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    guesses = [f"guess number {n}" for n in range(39)] + [PASSWORD]
    results = await asyncio.gather(
        *(accounts.authenticate(w.store, "amy", guess, client=HOME, client_limit=100) for guess in guesses),
        return_exceptions=True,
    )
    assert not any(isinstance(r, accounts.User) for r in results), "the right password got in"
    assert all(isinstance(r, accounts.LoginFailed) for r in results)
    judged = [r for r in results if not r.locked_until]
    assert len(judged) <= accounts.MAX_FAILURES - 1  # the MAX_FAILURES-th failure locks as it answers
    with pytest.raises(accounts.LoginFailed) as failed:
        await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME, client_limit=100)
    assert failed.value.locked_until


async def test_attempts_refused_by_a_lock_do_not_count_towards_the_next_one() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    for _ in range(accounts.MAX_FAILURES):
        with pytest.raises(accounts.LoginFailed):
            await accounts.authenticate(w.store, "amy", "guess", client=HOME)
    for _ in range(accounts.MAX_FAILURES + 3):  # the owner keeps trying while locked
        with pytest.raises(accounts.LoginFailed) as failed:
            await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME)
        assert failed.value.locked_until
    attempts = [k async for k in w.store.redis.scan_iter(match=AccountKeys.base + ":attempts:*")]
    await w.store.redis.hset(attempts[0], "locked_until", str(time.time() - 1))  # the lock ran out
    assert (await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME)).login == "amy"


async def test_a_right_password_resets_the_failure_count() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    for _ in range(accounts.MAX_FAILURES - 1):
        with pytest.raises(accounts.LoginFailed):
            await accounts.authenticate(w.store, "amy", "guess", client=HOME)
    await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME)
    with pytest.raises(accounts.LoginFailed) as failed:
        await accounts.authenticate(w.store, "amy", "guess", client=HOME)
    assert not failed.value.locked_until


async def test_a_lock_expires_by_itself() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    await fail(w, "amy", HOME, accounts.MAX_FAILURES)
    [pair] = [k async for k in w.store.redis.scan_iter(match=AccountKeys.attempts("*"))]
    await w.store.redis.hset(pair, "locked_until", str(time.time() - 1))  # as if 15 minutes had passed
    assert (await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME)).login == "amy"


async def test_a_new_password_replaces_the_old_one() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    await accounts.set_password(w.store, "amy", "a brand new passphrase")
    with pytest.raises(accounts.LoginFailed):
        await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME)
    await accounts.authenticate(w.store, "amy", "a brand new passphrase", client=HOME)


async def test_a_client_failing_across_names_is_throttled_until_its_oldest_failure_leaves_the_window() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    limit = 12
    for n in range(limit):  # a different name each time: no name's lock is reached
        await fail(w, f"name{n}", STRANGER, 1, client_limit=limit)
    started = time.time()
    with pytest.raises(accounts.Throttled) as throttled:
        await accounts.authenticate(w.store, "amy", PASSWORD, client=STRANGER, client_limit=limit)
    assert started < throttled.value.until <= started + lockout.CLIENT_WINDOW_SECONDS
    for _ in range(3):  # refused unjudged, and not counted: retrying does not push the end back
        with pytest.raises(accounts.Throttled) as again:
            await accounts.authenticate(w.store, "amy", PASSWORD, client=STRANGER, client_limit=limit)
        assert again.value.until == throttled.value.until
    assert (await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME, client_limit=limit)).login == "amy"
    [window] = [k async for k in w.store.redis.scan_iter(match=AccountKeys.client_failures("*"))]
    assert await w.store.redis.zcard(window) == limit
    oldest = (await w.store.redis.zrange(window, 0, 0))[0]
    await w.store.redis.zadd(window, {oldest: time.time() - lockout.CLIENT_WINDOW_SECONDS - 1})  # it has left
    assert (await accounts.authenticate(w.store, "amy", PASSWORD, client=STRANGER, client_limit=limit)).login == "amy"


async def test_a_parallel_burst_across_names_from_one_client_is_judged_no_more_often_than_its_limit() -> None:
    w = await world(TWO_TENANTS)
    limit = 10
    results = await asyncio.gather(
        *(accounts.authenticate(w.store, f"name{n}", "guess", client=STRANGER, client_limit=limit) for n in range(40)),
        return_exceptions=True,
    )
    judged = [r for r in results if isinstance(r, accounts.LoginFailed)]
    assert len(judged) == limit and all(isinstance(r, accounts.Throttled) for r in results if r not in judged)


async def test_an_ipv6_client_counts_as_its_64_and_a_mapped_ipv4_as_itself() -> None:
    assert lockout.client_of("2001:db8:1:2:aaaa::1") == lockout.client_of("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert lockout.client_of("2001:db8:1:3::1") != lockout.client_of("2001:db8:1:2::1")
    assert lockout.client_of("::ffff:192.0.2.1") == lockout.client_of(" 192.0.2.1") == "192.0.2.1"
    assert lockout.client_of("not an address " * 20) == ("not an address " * 20).strip()[: lockout.MAX_CLIENT]
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    for n in range(accounts.MAX_FAILURES):  # every try from another address of one /64
        await fail(w, "amy", f"2001:db8:1:2::{n + 1:x}", 1)
    with pytest.raises(accounts.LoginFailed) as failed:
        await accounts.authenticate(w.store, "amy", PASSWORD, client="2001:db8:1:2::ff")
    assert failed.value.locked_until


async def test_failures_from_many_clients_lock_the_name_except_for_its_own_clients_and_second_factor() -> None:
    """A name tried from many places is locked name-wide: the right password then gets in
    only from a client the login has logged in from, or goes on to its second factor."""
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    await accounts.add(w.store, "zoe", PASSWORD, "agent", {"acme": "zoe"})
    for login in ("amy", "zoe"):
        await accounts.authenticate(w.store, login, PASSWORD, client=HOME)  # HOME is where they log in from
    await second_factor.activate(w.store, "zoe", pyotp.random_base32())
    botnet = [f"198.51.100.{n}" for n in range(1, 50)]
    locks: list[float] = []
    for login in ("amy", "zoe", "nobody"):
        for client in botnet[: accounts.NAME_MAX_FAILURES // (accounts.MAX_FAILURES - 1)]:
            locks += await fail(w, login, client, accounts.MAX_FAILURES - 1)  # never a pair lock
        locks += await fail(w, login, botnet[-1], 1)
        assert locks[-1], f"{login} is locked name-wide"
    for login in ("amy", "zoe", "nobody"):  # a fresh address, the right password
        with pytest.raises(accounts.LoginFailed) as failed:
            await accounts.authenticate(w.store, login, "guess", client="192.0.2.200")
        assert failed.value.locked_until
    with pytest.raises(accounts.LoginFailed) as failed:
        await accounts.authenticate(w.store, "amy", PASSWORD, client="192.0.2.200")
    assert failed.value.locked_until
    assert (await accounts.authenticate(w.store, "amy", PASSWORD, client=HOME)).login == "amy"
    zoe = await accounts.authenticate(w.store, "zoe", PASSWORD, client="192.0.2.200")
    assert zoe.second_factor  # let through to the code, which login.py asks for next


async def test_unlock_lifts_a_logins_every_lock_and_leaves_others() -> None:
    w = await world(TWO_TENANTS)
    await accounts.add(w.store, "amy", PASSWORD, "agent", {"acme": "amy"})
    await accounts.add(w.store, "zoe", PASSWORD, "agent", {"acme": "zoe"})
    for client in (HOME, STRANGER):
        await fail(w, "amy", client, accounts.MAX_FAILURES)
    await fail(w, "zoe", STRANGER, accounts.MAX_FAILURES)
    kinds = sorted((lock.name, lock.client) for lock in await lockout.in_force(w.store))
    assert kinds == sorted([("amy", HOME), ("amy", STRANGER), ("zoe", STRANGER)])
    await accounts.unlock(w.store, "amy")
    assert [(lock.name, lock.client) for lock in await lockout.in_force(w.store)] == [("zoe", STRANGER)]
    assert (await accounts.authenticate(w.store, "amy", PASSWORD, client=STRANGER)).login == "amy"
    with pytest.raises(accounts.LoginFailed):
        await accounts.authenticate(w.store, "zoe", PASSWORD, client=STRANGER)


async def test_unknown_names_leave_no_pair_locks_on_the_list() -> None:
    w = await world(TWO_TENANTS)
    await fail(w, "nobody", STRANGER, accounts.MAX_FAILURES)
    assert await lockout.in_force(w.store) == []


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
    await accounts.authenticate(w.store, "amy", "the second password", client=HOME)

    for _ in range(accounts.MAX_FAILURES):
        with pytest.raises(accounts.LoginFailed):
            await accounts.authenticate(w.store, "amy", "guess", client=HOME)
    await user_cli.command(w.store, w.deployment, args("list"))
    assert f"amy  agent  acme:amy, globex:gus  LOCKED (from {HOME})" in capsys.readouterr().out
    await user_cli.command(w.store, w.deployment, args("unlock", login="amy"))
    await accounts.authenticate(w.store, "amy", "the second password", client=HOME)


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
