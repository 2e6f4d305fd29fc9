"""Who an API key speaks for: the token lookup, checked on every request, cached briefly.

A token authenticates only while everything it stands on holds:

- it is not revoked and not expired, and its user is active;
- a billing token's user is staff;
- a token for a customer: the customer is active, and the user is still its member
  (or staff).

The outcome of those checks (the token row with its user, whether it is valid, and the
customers it acts for) is kept in Redis (the cache's) for API_TOKEN_CACHE_SECONDS,
tagged with a *generation*. Every change that can withdraw a token (a membership saved or
deleted, a user or customer saved or deleted, a token saved or deleted) moves the
generation on, at once and again after the transaction commits, so an entry computed
before the change is never used after it: the token stops working with the next request.
A request that finds the cache unreachable reads the database, as without the cache.

Bulk `QuerySet.update()` calls send no signals: code that withdraws access that way
calls `invalidate()` itself.
"""

from __future__ import annotations

import functools
import hmac
import logging
import pickle
import secrets
import time
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save

from ..choices import CustomerStatus, TokenScope
from ..models import APIToken, Customer, Membership
from .tokens import digest_of, key_prefix

log = logging.getLogger(__name__)

GENERATION = "generation"
# seconds to wait for the cache's Redis before reading the database instead
CACHE_TIMEOUT = 1.0
# a cache that does not answer is reported at most once a minute per process
WARN_EVERY = 60.0
_warned_at = -WARN_EVERY


def _cache_failed(exc: Exception, what: str = "") -> None:
    global _warned_at
    now = time.monotonic()
    if now - _warned_at >= WARN_EVERY:
        _warned_at = now
        log.warning("token cache unavailable%s: %s", what, exc)


def acting_for(token: APIToken) -> tuple[bool, frozenset[int] | None]:
    """Whether `token` (with its user loaded) may be used now, and the customers it acts
    for (None: every customer). Reads memberships and the customer from the database."""
    user = token.user
    if token.revoked_at is not None or not user.is_active:
        return False, frozenset()
    if token.scope == TokenScope.BILLING:
        return (True, None) if user.is_staff else (False, frozenset())
    if token.customer_id is not None:
        acts_for = frozenset([token.customer_id])
        member = Membership.objects.filter(
            user=user, customer_id=token.customer_id, customer__status=CustomerStatus.ACTIVE
        )
        if member.exists():  # one query for the membership and the customer's status
            return True, acts_for
        active = Customer.objects.filter(pk=token.customer_id, status=CustomerStatus.ACTIVE)
        if user.is_staff and active.exists():
            return True, acts_for
        return False, frozenset()
    if user.is_staff:
        return True, None
    ids = Membership.objects.filter(user=user, customer__status=CustomerStatus.ACTIVE)
    return True, frozenset(ids.values_list("customer_id", flat=True))


# what the cache holds per token prefix: (generation, token with its user, valid, acts_for)
Entry = tuple[str, APIToken, bool, "frozenset[int] | None"]
ACTS_FOR = "_paddock_acts_for"


@functools.cache
def _redis() -> redis.Redis:
    """The Redis the cache uses, as a client of its own: Django's cache makes a new
    client for every call, which costs more than the lookup it saves."""
    return redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=CACHE_TIMEOUT, socket_connect_timeout=CACHE_TIMEOUT
    )


def _key(name: str) -> str:
    prefix = settings.CACHES["default"].get("KEY_PREFIX", "")
    return f"{prefix}:apitoken:{name}"


def _cached(prefix: str) -> tuple[Entry | None, str | None]:
    """The cached entry of `prefix` if it is of the current generation, and the current
    generation (None when the cache does not answer)."""
    try:
        client = _redis()
        found: list[Any] = client.mget([_key(GENERATION), _key(prefix)])  # bytes or None
        raw_generation, raw_entry = found
        if raw_generation is None:
            generation = secrets.token_hex(8)
            if not client.set(_key(GENERATION), generation, nx=True):
                current: Any = client.get(_key(GENERATION))
                generation = (current or b"").decode()
            return None, generation
    except Exception as exc:  # the cache is an optimisation: fall back to the database
        _cache_failed(exc)
        return None, None
    generation = raw_generation.decode()
    if raw_entry is not None:
        entry = pickle.loads(raw_entry)
        if entry[0] == generation:
            return entry, generation
    return None, generation


def _store(entry: Entry) -> None:
    try:
        _redis().set(
            _key(entry[1].prefix), pickle.dumps(entry), ex=settings.API_TOKEN_CACHE_SECONDS
        )
    except Exception as exc:
        _cache_failed(exc)


def authenticate_key(key: str) -> APIToken | None:
    """The usable token that `key` is, with its user, or None.

    `customers_of(token)` then answers without a query."""
    prefix = key_prefix(key)
    if prefix is None:
        return None
    entry, generation = None, None
    caching = settings.API_TOKEN_CACHE_SECONDS > 0
    if caching:
        entry, generation = _cached(prefix)
    if entry is None:
        token = APIToken.objects.select_related("user").filter(prefix=prefix).first()
        if token is None:
            return None
        # the password hash stays out of Redis: deferred, it is read again only if asked
        # for, and a save() of this user leaves it alone
        token.user.__dict__.pop("password", None)
        valid, acts_for = acting_for(token)
        entry = (generation or "", token, valid, acts_for)
        if caching and generation is not None:
            _store(entry)
    _, token, valid, acts_for = entry
    if not hmac.compare_digest(token.digest, digest_of(key)):
        return None
    if not valid or not token.is_usable:
        return None
    setattr(token, ACTS_FOR, acts_for)
    return token


def customers_of(token: APIToken) -> frozenset[int] | None:
    """The customers a valid token acts for (None: every customer); from the lookup that
    authenticated it when there was one."""
    if hasattr(token, ACTS_FOR):
        return getattr(token, ACTS_FOR)
    return acting_for(token)[1]


def touched(token: APIToken) -> None:
    """Keep the cached copy's `last_used_at` in step after the row was updated."""
    if settings.API_TOKEN_CACHE_SECONDS <= 0:
        return
    entry, generation = _cached(token.prefix)
    if entry is not None and generation is not None:
        entry[1].last_used_at = token.last_used_at
        _store(entry)


def invalidate() -> None:
    """Make every cached token lookup stale (the next request reads the database)."""
    try:
        _redis().set(_key(GENERATION), secrets.token_hex(8))
    except Exception as exc:
        _cache_failed(exc, ", not invalidated")


def _withdraw(sender: Any, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if sender is get_user_model() and update_fields and set(update_fields) <= {"last_login"}:
        return  # a login changes nothing a token depends on
    invalidate()
    # and again once the change is visible to other connections: a lookup that read the
    # old rows in between is not kept
    transaction.on_commit(invalidate, robust=True)


def connect_signals() -> None:
    for model in (Membership, Customer, APIToken, get_user_model()):
        post_save.connect(_withdraw, sender=model, dispatch_uid=f"token-auth-save-{model}")
        post_delete.connect(_withdraw, sender=model, dispatch_uid=f"token-auth-del-{model}")
