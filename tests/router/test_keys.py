"""Every key of a tenant lives in one cluster slot, so scripts and transactions
run unchanged on Redis Cluster."""

from __future__ import annotations

import inspect

from redis.crc import key_slot

from router.keys import Keys, shard_of


def _all_keys(keys: Keys) -> list[str]:
    found = []
    for name, member in inspect.getmembers(type(keys)):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            found.append(getattr(keys, name))
        elif inspect.isfunction(member):
            arity = len(inspect.signature(member).parameters) - 1
            found.append(member(keys, *(["x"] * arity)))
    return found


def test_every_key_of_a_tenant_shares_one_slot() -> None:
    keys = Keys("acme")
    all_keys = _all_keys(keys)
    assert len(all_keys) > 20
    assert {key_slot(key.encode()) for key in all_keys} == {key_slot(b"cr:{acme}")}


def test_the_shard_is_read_back_from_any_key() -> None:
    assert shard_of(Keys("globex").conversation("01ABC")) == "globex"
