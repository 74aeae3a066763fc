"""The web console's pages: sign-in, upload, models, keys and plans, monitoring.

Each page is a server-rendered shell (jinja2 templates from ``lambdaserve/web``) plus a
little JavaScript; every figure on a page is fetched by that script from the admin API,
with the session cookie and the page's CSRF token, exactly as a script with the admin token
would: the console has no private way in. The static files (styles, scripts, the vendored
uPlot) are served from the package, so the console works with no network.

Pages send a Content-Security-Policy that allows only this origin's scripts, styles and
connections, and may not be framed.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from starlette.requests import Request as HTTPRequest
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from lambdaserve import __version__
from lambdaserve.console.sessions import COOKIE_NAME, SessionBook, clear_session_cookie, set_session_cookie
from lambdaserve.console.uploads import ACCEPTED
from lambdaserve.web import STATIC_DIR, TEMPLATES_DIR

PAGES = {
    "upload": "Upload",
    "models": "Models",
    "keys": "Keys and plans",
    "monitoring": "Monitoring",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
FAILED_SIGN_IN_DELAY_S = 0.3  # slows guessing; the token is 256 random bits anyway
MAX_FORM_BYTES = 4096


def console_routes(sessions: SessionBook, max_upload_bytes: int, stage: str) -> list[BaseRoute]:
    """The pages; ``stage`` is the one served, the default for new plans and uploads."""
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )

    def render(name: str, status: int = 200, **context: Any) -> Response:
        html = templates.get_template(name).render(version=__version__, pages=PAGES, **context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def sign_in_page(request: HTTPRequest, status: int = 200, error: str = "") -> Response:
        return render("signin.html", status, next=_next_page(request.query_params.get("next")), error=error)

    async def index(request: HTTPRequest) -> Response:
        if sessions.access(request) is None:
            return sign_in_page(request)
        return RedirectResponse("/_/models", status_code=303)

    async def sign_in(request: HTTPRequest) -> Response:
        if request.method == "GET":
            if sessions.access(request) is not None:
                return RedirectResponse(_next_page(request.query_params.get("next")), status_code=303)
            return sign_in_page(request)
        form = await _read_form(request)
        target = _next_page(form.get("next"))
        if not sessions.is_admin_token(form.get("token", "")):
            await asyncio.sleep(FAILED_SIGN_IN_DELAY_S)
            return render(
                "signin.html",
                401,
                next=target,
                error="That is not this server's admin token. It was printed when the server first "
                "started, and is in the state directory's admin-token file.",
            )
        session_id, _ = sessions.open()
        response = RedirectResponse(target, status_code=303)
        set_session_cookie(response, request, session_id)
        return response

    async def sign_out(request: HTTPRequest) -> Response:
        access = sessions.access(request)
        form = await _read_form(request)
        if access is not None and access.session is not None:
            if not sessions.csrf_ok(request, access, form.get("csrf", "")):
                return render(
                    "signin.html", 403, next="/_/", error="Sign-out refused: reload the page and try again."
                )
            sessions.close(request.cookies.get(COOKIE_NAME, ""))
        response = RedirectResponse("/_/signin", status_code=303)
        clear_session_cookie(response, request)
        return response

    def page(name: str) -> Any:
        async def endpoint(request: HTTPRequest) -> Response:
            access = sessions.access(request)
            if access is None or access.session is None:
                return RedirectResponse(f"/_/signin?next={quote(request.url.path)}", status_code=303)
            return render(
                f"{name}.html",
                page=name,
                csrf_token=access.session.csrf_token,
                max_upload_bytes=max_upload_bytes,
                accepted=ACCEPTED,
                stage=stage,
            )

        return endpoint

    return [
        Route("/_/", index),
        Route("/_/signin", sign_in, methods=["GET", "POST"]),
        Route("/_/signout", sign_out, methods=["POST"]),
        *(Route(f"/_/{name}", page(name)) for name in PAGES),
        Mount("/_/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]


def _next_page(candidate: str | None) -> str:
    """Where to go after signing in: a console page, never another site."""
    if candidate and candidate.startswith("/_/") and "//" not in candidate and "\\" not in candidate:
        return candidate
    return "/_/models"


async def _read_form(request: HTTPRequest) -> dict[str, str]:
    """A small urlencoded form (sign-in, sign-out); anything else reads as empty."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_FORM_BYTES:
            return {}
    fields = parse_qs(raw.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}
