"""Who may use the admin API and the console: the admin token, or a console session.

Scripts send the admin token as ``Authorization: Bearer <token>``. The console's pages
sign in once with the token and then hold a session cookie instead:

- the cookie's value is a random session id (32 bytes from ``secrets``), not the token;
  the server keeps only its sha256, so the table of sessions holds nothing a reader could
  replay. The cookie is ``HttpOnly`` (no script can read it), ``SameSite=Strict`` (no
  other site's page makes the browser send it) and ``Secure`` when the page came over
  HTTPS;
- every session has its own random CSRF token, written into each page it renders. A
  request that changes state (anything but GET, HEAD, OPTIONS) and is authenticated by the
  cookie must carry it in ``X-CSRF-Token``; a bearer-token request needs none, since
  browsers never add that header on their own;
- sessions live in the server's memory: they end ``SESSION_TTL_S`` after signing in (when
  the cookie expires too), on sign-out, and when the server stops. At most ``MAX_SESSIONS``
  are kept (the least recently used goes first), so signing in in a loop cannot grow memory.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request as HTTPRequest
from starlette.responses import Response

COOKIE_NAME = "lambdaserve_session"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 256
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Session:
    csrf_token: str
    created: float
    last_used: float


@dataclass(frozen=True)
class Access:
    """How a request is authorised: ``via`` is ``"token"`` or ``"session"``."""

    via: str
    session: Session | None = None


class SessionBook:
    """The console's signed-in sessions, by the sha256 of their ids."""

    def __init__(self, admin_token: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._admin_token = admin_token
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def is_admin_token(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.strip().encode(), self._admin_token.encode())

    def open(self) -> tuple[str, Session]:
        """A new session: its id (for the cookie, never stored) and its record."""
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), now, now)
        self._sessions[_digest(session_id)] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session_id, session

    def find(self, session_id: str) -> Session | None:
        digest = _digest(session_id)
        session = self._sessions.get(digest)
        if session is None:
            return None
        now = self._clock()
        if now - session.created > SESSION_TTL_S:
            del self._sessions[digest]
            return None
        session.last_used = now
        self._sessions.move_to_end(digest)
        return session

    def close(self, session_id: str) -> None:
        self._sessions.pop(_digest(session_id), None)

    def access(self, request: HTTPRequest) -> Access | None:
        """The bearer token or a live session cookie; None when neither is there."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.is_admin_token(token):
            return Access("token")
        session_id = request.cookies.get(COOKIE_NAME)
        session = self.find(session_id) if session_id else None
        return Access("session", session) if session else None

    @staticmethod
    def csrf_ok(request: HTTPRequest, access: Access, form_token: str = "") -> bool:
        """Whether a state-changing request by cookie carries its session's CSRF token.

        Scripts send it as the ``X-CSRF-Token`` header; plain HTML forms (sign-out), which
        cannot set headers, as a form field (``form_token``).
        """
        if access.via == "token" or request.method in SAFE_METHODS or access.session is None:
            return True
        sent = request.headers.get(CSRF_HEADER, "") or form_token
        return hmac.compare_digest(sent.encode(), access.session.csrf_token.encode())


def set_session_cookie(response: Response, request: HTTPRequest, session_id: str) -> None:
    response.set_cookie(
        COOKIE_NAME,
        session_id,
        max_age=int(SESSION_TTL_S),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response, request: HTTPRequest) -> None:
    response.delete_cookie(
        COOKIE_NAME, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
