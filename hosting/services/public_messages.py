"""What a customer may read of an error or a state message.

Job errors, job messages, server state messages and console errors are stored as the
provider wrote them: the backend's text with hypervisor URIs, socket and file paths and
host names, fit for staff. A customer gets `customer_message(...)` of them instead: the
text itself when it carries no infrastructure detail, otherwise one neutral sentence
chosen by the kind of failure. Pure functions: no database, no settings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..backends.errors import (
    BackendError,
    DomainNotFound,
    HostUnreachable,
    ImageNotAvailable,
    OperationTimeout,
)
from .errors import ServiceError

UNREACHABLE = "The server's host cannot be reached right now; the provider is on it."
NOT_FOUND = "The server's virtual machine was not found on its host; contact support."
IMAGE_MISSING = "The image is not available on the server's host; contact support."
TIMEOUT = "The operation took too long and was stopped; try again later."
HYPERVISOR = "The hypervisor refused the operation; contact support if it persists."
INTERNAL = "An internal error stopped the operation; the provider has the details."
LOST_WORKER = "The operation was interrupted and given up; try again."

# Exception classes to the sentence a customer reads, most specific first.
_BY_CLASS: tuple[tuple[type[BaseException], str], ...] = (
    (HostUnreachable, UNREACHABLE),
    (DomainNotFound, NOT_FOUND),
    (ImageNotAvailable, IMAGE_MISSING),
    (OperationTimeout, TIMEOUT),
    (BackendError, HYPERVISOR),
)

# Stored texts (the class is gone by then) to the same sentences, by what they say.
_BY_TEXT: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"unreachable|cannot reach|failed to connect|connection refused|no route", re.I),
        UNREACHABLE,
    ),
    (re.compile(r"no such domain|domain \S+ is missing|not found", re.I), NOT_FOUND),
    (re.compile(r"\bimage\b", re.I), IMAGE_MISSING),
    (re.compile(r"timed? ?out|timeout", re.I), TIMEOUT),
    (re.compile(r"worker was lost|gave up after", re.I), LOST_WORKER),
    (re.compile(r"^internal error", re.I), INTERNAL),
)

# What marks a text as carrying infrastructure detail.
_INFRASTRUCTURE = re.compile(
    r"[a-z][a-z0-9+.-]*://"  # a URI: qemu+ssh://..., test:///default, unix://
    r"|(?<![\w.])/(?:[\w.@%+-]+/)*[\w.@%+-]+"  # an absolute path: /var/run/libvirt/...
    r"|\b(?:socket|libvirt|libvirtd|qemu|hypervisor|traceback)\b"
    r"|^internal error|worker was lost",
    re.IGNORECASE,
)


def customer_message(value: str | BaseException | None, *, hosts: Iterable[str] = ()) -> str:
    """The customer's version of an error or state message (`""` stays `""`).

    `hosts` are host names to treat as infrastructure too (the server's or the job's host).
    """
    if value is None:
        return ""
    if isinstance(value, BaseException):
        return _for_exception(value, hosts)
    text = value.strip()
    if not _INFRASTRUCTURE.search(text):
        return _without_hosts(text, hosts)
    for pattern, sentence in _BY_TEXT:
        if pattern.search(text):
            return sentence
    return HYPERVISOR


def _for_exception(exc: BaseException, hosts: Iterable[str]) -> str:
    for cls, sentence in _BY_CLASS:
        if isinstance(exc, cls):
            return sentence
    if isinstance(exc, ServiceError):
        # written for the caller already; still never let a path or a host through
        return customer_message(exc.message, hosts=hosts)
    return INTERNAL


def _without_hosts(text: str, hosts: Iterable[str]) -> str:
    """The text with each host name said as "its host" ("Preparing image X on its host")."""
    for name in hosts:
        if name:
            pattern = rf"(?<![\w.-])(?:host )?{re.escape(name)}(?![\w-])"
            text = re.sub(pattern, "its host", text, flags=re.IGNORECASE)
    return text
