"""The principal cache never outlives its token, its TTL, or a revocation."""

from __future__ import annotations

from pier.services.context import Principal, PrincipalCache

ALICE = Principal("u1", "alice", False, "p1", token_id="t1")


def test_hit_within_ttl() -> None:
    cache = PrincipalCache(ttl=5)
    cache.put("h", ALICE, token_expires_at=100.0, now=10.0)
    assert cache.get("h", 14.9) == ALICE


def test_entry_lapses_after_ttl() -> None:
    cache = PrincipalCache(ttl=5)
    cache.put("h", ALICE, token_expires_at=100.0, now=10.0)
    assert cache.get("h", 15.0) is None
    assert cache.get("h", 11.0) is None  # dropped, not resurrected


def test_token_expiry_wins_over_ttl() -> None:
    cache = PrincipalCache(ttl=5)
    cache.put("h", ALICE, token_expires_at=12.0, now=10.0)
    assert cache.get("h", 11.9) == ALICE
    assert cache.get("h", 12.0) is None


def test_revocation_drops_every_entry_of_the_token() -> None:
    cache = PrincipalCache(ttl=5)
    cache.put("h", ALICE, token_expires_at=100.0, now=10.0)
    cache.put("other", Principal("u2", "bob", False, None, token_id="t2"), 100.0, 10.0)
    cache.drop_token("t1")
    assert cache.get("h", 10.5) is None
    assert cache.get("other", 10.5) is not None
