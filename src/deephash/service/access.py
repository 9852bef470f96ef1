"""Who may talk to the service: the ``Host`` a request names, where a write comes from, and
the token.

A browser lets any web page send requests to ``127.0.0.1``: a page of another origin can
post a form or a ``fetch(..., {mode: "no-cors"})`` (it cannot read the answer, but an add
would be done), and a DNS-rebinding page (its own name, resolved to ``127.0.0.1``) can even
read. :class:`AccessGuard` refuses, before any body is read, each with a one-line JSON error:

* a ``Host`` that is not this server's (400): ``localhost``, a loopback address, the bound
  address (any address when bound to ``0.0.0.0`` or ``::``: an IP address cannot be
  rebound), or a name of ``--allowed-host`` (``name`` or ``name:port``; a proxy's name);
* a request that changes nothing safe (any method but GET, HEAD, OPTIONS) from another
  origin (403): an ``Origin`` that is not the ``Host`` (or an allowed host), or a
  ``Sec-Fetch-Site`` other than ``same-origin``/``none`` from an origin not allowed;
* a write (``POST /items``) without the ``X-Requested-With`` header (403): a header that a
  cross-origin page can only send after a CORS preflight, which this server never grants
  (the page sends it); with a token, the token is that proof;
* with ``--token`` (or ``DEEPHASH_TOKEN``), a write without ``Authorization: Bearer TOKEN``
  (401), and with ``--token-reads`` every request but the page, its files, ``/health`` and
  ``/openapi.json``. A GET may carry the token in the ``deephash_token`` cookie instead
  (the page's thumbnails), from its own origin only. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from deephash.errors import ConfigError
from deephash.service.guard import send_json

#: the requests that change the index: (method, path)
WRITES = frozenset({("POST", "/items")})
#: paths every client may read without a token: the page, its files, liveness, the schema
OPEN = ("/", "/health", "/openapi.json")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: the header a write must carry (without a token); the page sends it
WRITE_HEADER = "X-Requested-With"
COOKIE = "deephash_token"
TOKEN_ENV = "DEEPHASH_TOKEN"
LOOPBACK_NAMES = frozenset({"localhost"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}")
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
DEFAULT_PORTS = {"http": 80, "https": 443}


def check_token(token: str) -> None:
    """Raise ``ConfigError`` unless ``token`` is fit to guard the service."""
    if not _TOKEN.fullmatch(token):
        raise ConfigError("--token (or DEEPHASH_TOKEN) must be 16 to 256 characters of A-Z "
                          "a-z 0-9 . _ ~ -; make one with: python -c 'import secrets; "
                          "print(secrets.token_urlsafe())'")


def split_host(value: str) -> tuple[str, int | None]:
    """``"[::1]:8000"`` -> ``("::1", 8000)``, ``"Example.org."`` -> ``("example.org", None)``;
    ``("", None)`` for a value that is not a host."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    if not host or (port and not port.isdigit()):
        return "", None
    return host.rstrip("."), int(port) if port else None


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class AccessPolicy:
    """What :class:`AccessGuard` accepts; ``bound`` is the address the server binds."""

    bound: str = "127.0.0.1"
    allowed_hosts: tuple[str, ...] = ()
    token: str | None = None
    token_reads: bool = False

    def __post_init__(self) -> None:
        if self.token is not None:
            check_token(self.token)
        elif self.token_reads:
            raise ConfigError("--token-reads needs a token: give --token or set DEEPHASH_TOKEN")
        for entry in self.allowed_hosts:
            name = split_host(entry)[0]
            if not (_NAME.fullmatch(name) or _ip(name)):
                raise ConfigError(f"--allowed-host {entry!r} is not a host name; give a name "
                                  "or name:port (e.g. search.example.org)")

    def host_allowed(self, host: str, port: int | None) -> bool:
        """Whether ``host`` (and ``port``) name this server: see the module docstring."""
        bound = self.bound.strip("[]").lower()
        ip = _ip(host)
        if host in LOOPBACK_NAMES or host == bound or self._listed(host, port):
            return True
        return ip is not None and (ip.is_loopback or bound in WILDCARDS
                                   or ip == _ip(bound))

    def _listed(self, host: str, port: int | None) -> bool:
        for entry in self.allowed_hosts:
            name, listed_port = split_host(entry)
            if name == host and listed_port in (None, port):
                return True
        return False

    def refusal(self, method: str, path: str, headers: Headers) -> tuple[int, str] | None:
        """``(status, message)`` of a request this policy refuses, ``None`` if it may pass."""
        host_header = headers.get("host", "")
        host, port = split_host(host_header)
        if not host or not self.host_allowed(host, port):
            return 400, (f"Host {host_header!r} is not a name of this server (a DNS-rebinding "
                         "page?); open it as http://127.0.0.1:PORT/, or start it with "
                         "--allowed-host NAME for the name you use")
        write = (method, path) in WRITES
        if method not in SAFE_METHODS:
            crossing = self._cross_origin(headers, host, port)
            if crossing:
                return 403, (f"a request from {crossing} to change or query this server is "
                             "refused (cross-origin); use the page this server serves, or a "
                             "client that is not a browser")
        if self.token is not None and (write or (self.token_reads and not _open(path))):
            if not self._token_given(method, headers):
                what = "adding images" if write else "every request but the page"
                return 401, (f"this server requires its token for {what}; send the header "
                             "'Authorization: Bearer TOKEN' (the --token or DEEPHASH_TOKEN it "
                             "was started with; the page: open it as /#token=TOKEN)")
        elif write and not headers.get(WRITE_HEADER):
            return 403, (f"adding images needs the header '{WRITE_HEADER}: <anything>' (a "
                         "browser page of another origin cannot send it); add it to the "
                         "request, e.g. curl -H 'X-Requested-With: curl'")
        return None

    def _cross_origin(self, headers: Headers, host: str, port: int | None) -> str | None:
        """What names the request's foreign origin (``None``: it comes from this one)."""
        origin = headers.get("origin")
        listed = False
        if origin is not None:
            parts = urlsplit(origin)
            try:
                origin_port = parts.port
            except ValueError:
                return f"origin {origin!r}"
            if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
                return f"origin {origin!r}"
            default = DEFAULT_PORTS[parts.scheme]
            listed = self._listed(parts.hostname, origin_port)
            same = (parts.hostname.rstrip(".") == host
                    and (origin_port or default) == (port or default))
            if not (same or listed):
                return f"origin {origin!r}"
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none") and not listed:
            return f"a {site} page (Sec-Fetch-Site)"
        return None

    def _token_given(self, method: str, headers: Headers) -> bool:
        assert self.token is not None
        scheme, _, value = headers.get("authorization", "").partition(" ")
        candidates = [value.strip()] if scheme.lower() == "bearer" else []
        if method in ("GET", "HEAD") and headers.get("sec-fetch-site") in (None, "same-origin"):
            candidates += _cookies(headers.getlist("cookie"), COOKIE)
        expected = self.token.encode()
        return any(hmac.compare_digest(given.encode("utf-8", "replace"), expected)
                   for given in candidates)


def _open(path: str) -> bool:
    return path in OPEN or path.startswith("/static/")


def _cookies(values: Iterable[str], name: str) -> list[str]:
    """Every value of cookie ``name`` in the ``Cookie`` header(s)."""
    found = []
    for value in values:
        for pair in value.split(";"):
            key, _, given = pair.strip().partition("=")
            if key == name:
                found.append(given)
    return found


class AccessGuard:
    """ASGI middleware refusing what :class:`AccessPolicy` refuses, before the body is read."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self.policy.refusal(scope["method"], scope["path"], Headers(scope=scope))
            if refused is not None:
                status, message = refused
                extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
                await send_json(send, status, {"error": message}, extra)
                return
        await self.app(scope, receive, send)
