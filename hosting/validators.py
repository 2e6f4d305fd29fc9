"""Field validators for values that reach a hypervisor or the file system: a host's libvirt
URI and an image's file in the store. Pure functions (no models), so that the backends and
the worker can check again at use. And the one validator of display names (plans, images,
customers, SSH keys, tokens), shared by the models, the API serializers and the forms."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.deconstruct import deconstructible

# Transports Paddock opens, and the path each may name. `qemu+ext`, `qemu+unix`,
# `qemu+libssh*` and every other driver are refused: ext runs a program, unix picks a
# socket, and a test driver with a path reads a file of the control node.
LOCAL_URIS = {"qemu": "/system", "test": "/default"}
REMOTE_SCHEMES = {"qemu+ssh", "qemu+tls", "qemu+tcp"}
REMOTE_PATH = "/system"
# Query parameters of libvirt's remote driver that may be set: none of these runs a
# program, picks a socket or a key file, or turns off verification.
REMOTE_PARAMS = {"no_tty", "sshauth", "known_hosts_verify"}
# Every parameter libvirt's remote driver reads; the test driver ignores parameters, so
# there they are plain labels (tests and the benchmark make distinct URIs with them), but
# none of libvirt's own names.
LIBVIRT_PARAMS = {
    "name",
    "command",
    "socket",
    "auth",
    "sshauth",
    "netcat",
    "keyfile",
    "pkipath",
    "no_verify",
    "no_tty",
    "known_hosts",
    "known_hosts_verify",
    "mode",
    "proxy",
    "tls_priority",
}
_PARAM = r"[A-Za-z0-9_]+(=[A-Za-z0-9_.,-]*)?"
_QUERY = re.compile(rf"{_PARAM}(&{_PARAM})*")
_HOSTNAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")


def libvirt_uri_problem(uri: str) -> str | None:
    """Why this libvirt URI is refused, or None when Paddock may open it."""
    if not isinstance(uri, str) or not uri:
        return "Enter a libvirt URI."
    if not uri.isascii() or any(c.isspace() or not c.isprintable() for c in uri):
        return "A libvirt URI has no spaces or control characters."
    if "%" in uri or ";" in uri or "#" in uri or "\\" in uri:
        return "A libvirt URI here has no escapes (%), ';', '#' or '\\'."
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    params = [p.split("=", 1)[0] for p in parts.query.split("&")] if parts.query else []
    if scheme not in LOCAL_URIS and scheme not in REMOTE_SCHEMES:
        allowed = ", ".join([*sorted(REMOTE_SCHEMES), "qemu:///system", "test:///default"])
        return f"Transport {scheme or '(none)'!r} is not allowed; use one of {allowed}."
    if parts.query and not _QUERY.fullmatch(parts.query):
        return "Write parameters as name=value (letters, digits, '.', ',', '-'), joined by '&'."
    if scheme in LOCAL_URIS:
        if parts.netloc or parts.path != LOCAL_URIS[scheme]:
            return f"The local {scheme} URI is {scheme}://{LOCAL_URIS[scheme]}."
        if scheme == "qemu" and params:
            return "qemu:///system takes no parameters."
        reserved = sorted(set(params) & LIBVIRT_PARAMS)
        if reserved:
            return f"Parameter {reserved[0]!r} is not allowed."
        return None
    if parts.path != REMOTE_PATH:
        return f"A remote URI names the system instance: {scheme}://HOST/system."
    if problem := _remote_host_problem(parts.netloc):
        return problem
    refused = sorted(set(params) - REMOTE_PARAMS)
    if refused:
        allowed = ", ".join(sorted(REMOTE_PARAMS))
        return f"Parameter {refused[0]!r} is not allowed (allowed: {allowed})."
    return None


def _remote_host_problem(netloc: str) -> str | None:
    """What is wrong with `[user@]host[:port]` of a remote URI, or None."""
    userinfo, _, hostport = netloc.rpartition("@")
    if userinfo and (not _USER.fullmatch(userinfo)):
        return "The user name may hold letters, digits, '.', '_' and '-' (no password)."
    host, port = hostport, ""
    if hostport.startswith("["):
        host, _, rest = hostport.partition("]")
        host += "]"
        if rest and not rest.startswith(":"):
            return "Write an IPv6 host as [address]:port."
        port = rest[1:]
        if not _IPV6.fullmatch(host):
            return "The host is not a valid IPv6 address."
    else:
        host, _, port = hostport.partition(":")
        if not _HOSTNAME.fullmatch(host):
            return "The host is a host name or an IP address, starting with a letter or digit."
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return "The port is a number from 1 to 65535."
    return None


# LXC hosts (hosting/backends/lxc_backend.py): the machine itself, or a host reached over
# SSH; the path is the host's LXC directory (lxcpath). No parameters: nothing here picks a
# program, a key or a socket.
LXC_LOCAL_SCHEME = "lxc"
LXC_REMOTE_SCHEME = "lxc+ssh"
_LXC_PATH = re.compile(r"(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+")


def lxc_uri_problem(uri: str) -> str | None:
    """Why this LXC host URI is refused, or None: `lxc:///var/lib/lxc` (this machine) or
    `lxc+ssh://root@host[:port]/var/lib/lxc`."""
    if not isinstance(uri, str) or not uri:
        return "Enter an LXC host URI."
    if not uri.isascii() or any(c.isspace() or not c.isprintable() for c in uri):
        return "An LXC URI has no spaces or control characters."
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in (LXC_LOCAL_SCHEME, LXC_REMOTE_SCHEME):
        return (
            f"Transport {scheme or '(none)'!r} is not allowed for an LXC host; use "
            "lxc:///PATH or lxc+ssh://USER@HOST/PATH."
        )
    if parts.query or parts.fragment or "?" in uri or "#" in uri or "%" in uri:
        return "An LXC URI takes no parameters, fragments or escapes."
    if not _LXC_PATH.fullmatch(parts.path) or "/../" in parts.path + "/":
        return "The path is the host's LXC directory, absolute (/var/lib/lxc), without '..'."
    if scheme == LXC_LOCAL_SCHEME:
        if parts.netloc:
            return "The local LXC URI has no host: lxc:///var/lib/lxc."
        return None
    return _remote_host_problem(parts.netloc)


def host_uri_problem(uri: str, backend: str) -> str | None:
    """Why `uri` is refused for a host of backend kind `backend` (a BackendKind value)."""
    if backend == "lxc":
        return lxc_uri_problem(uri)
    return libvirt_uri_problem(uri)


def validate_libvirt_uri(uri: str) -> None:
    """A host's URI field: a libvirt URI or an LXC one (Host.clean matches it to the
    host's backend)."""
    scheme = urlsplit(uri).scheme.lower() if isinstance(uri, str) else ""
    if scheme in (LXC_LOCAL_SCHEME, LXC_REMOTE_SCHEME):
        problem = lxc_uri_problem(uri)
    else:
        problem = libvirt_uri_problem(uri)
    if problem:
        raise ValidationError(problem, code="invalid")


def validate_image_source(source: str) -> None:
    """An image's file: a regular file inside settings.IMAGE_STORE (see hosting.imagestore)."""
    from .imagestore import UnsafeImageSource, resolve_source

    if not source:
        return
    try:
        resolve_source(source)
    except UnsafeImageSource as exc:
        raise ValidationError(str(exc), code="invalid") from exc


# Unicode categories a name never holds: control (Cc), surrogate (Cs), private use (Co),
# unassigned (Cn), and the bidirectional overrides and isolates of the format category.
_REFUSED_CATEGORIES = {"Cc", "Cs", "Co", "Cn"}
_BIDI_CONTROLS = {chr(c) for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]}

# What the schema says of a name: no C0 or C1 control character (the validator refuses
# more: unassigned code points and the rest above, which a JSON Schema pattern cannot say).
# The schema's `format` of a name: printable text as NameValidator decides it.
NAME_FORMAT = "printable-name"
_SCHEMA_REFUSED = r"\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069"
# (and at least one character that is not white space: names are trimmed, then non-blank)
NAME_PATTERN = rf"^[^{_SCHEMA_REFUSED}]*[^\s{_SCHEMA_REFUSED}][^{_SCHEMA_REFUSED}]*$"
OPTIONAL_NAME_PATTERN = rf"^[^{_SCHEMA_REFUSED}]*$"


@deconstructible
class NameValidator:
    """A display name (plan, image, customer, SSH key, token): printable text only.

    Refuses control characters (newlines and tabs included), unassigned code points,
    surrogates, private-use characters and bidirectional overrides, naming the first one.
    """

    code = "invalid_name"

    def __call__(self, value: str) -> None:
        for position, char in enumerate(value or ""):
            if unicodedata.category(char) in _REFUSED_CATEGORIES or char in _BIDI_CONTROLS:
                raise ValidationError(
                    "Names may not contain control characters or unassigned code points "
                    "(U+%(code)04X at position %(position)d).",
                    code=self.code,
                    params={"code": ord(char), "position": position + 1},
                )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NameValidator)

    def __hash__(self) -> int:
        return hash(self.code)


validate_name = NameValidator()
