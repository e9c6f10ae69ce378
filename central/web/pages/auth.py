"""Signing in and out, changing one's password, and the home page that leads to each role's work."""

import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from ... import users
from ...errors import CentralError
from .. import sessions, signin
from ..base import address, call, console, page, render

LOGIN_COOKIE = "quire_login"   # double-submit token of the sign-in form, before any session exists
# Each role's first page, in the order a person holding several is led.
HOMES = (("reader", "/reader"), ("security_officer", "/officer"), ("auditor", "/audit"), ("archivist", "/catalogue"),
         ("inspector", "/qc"), ("admin", "/admin"))


def _cookie_flags(request: Request) -> dict:
    return {"httponly": True, "samesite": "strict", "secure": console(request).secure, "path": "/"}


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect to elsewhere."""
    parts = urlsplit(target or "/")
    if parts.scheme or parts.netloc or not parts.path.startswith("/") or parts.path.startswith("//"):
        return "/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def login_form(request: Request):
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, login_token=token, next=_safe_next(request.query_params.get("next")))
    response.set_cookie(LOGIN_COOKIE, token, max_age=600, **_cookie_flags(request))
    return response


async def login(request: Request):
    form = await request.form()
    nxt = _safe_next(form.get("next"))
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), str(form.get("login_token", "")).encode()):
        return render(request, "login.html", None, 403, login_token="", next=nxt,
                      error="登录表单已失效，请刷新页面后重新登录。")
    outcome = await call(request, signin.sign_in, console(request).archive, str(form.get("user", "")),
                         str(form.get("password", "")), address(request))
    if outcome.token is None:
        return render(request, "login.html", None, outcome.status, login_token=cookie, next=nxt,
                      error=outcome.message, user=str(form.get("user", ""))[:64])
    response = RedirectResponse(nxt, status_code=303)
    response.set_cookie(sessions.COOKIE, outcome.token, **_cookie_flags(request))
    response.delete_cookie(LOGIN_COOKIE, path="/")
    return response


@page
async def logout(request: Request, visit, form):
    await call(request, sessions.end, console(request).archive, visit.token_sha256, "signed-out", visit.actor.label)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict", secure=console(request).secure)
    return response


@page
async def password(request: Request, visit, form):
    if form is None:
        return render(request, "password.html", visit)
    new, again = str(form.get("new", "")), str(form.get("again", ""))
    if new != again:
        return render(request, "password.html", visit, 400, error="两次输入的新密码不一致。")
    try:
        await call(request, users.change_password, console(request).archive, visit.actor, str(form.get("old", "")),
                   new)
    except CentralError as exc:
        return render(request, "password.html", visit, 400, error=str(exc))
    return RedirectResponse("/", status_code=303)


@page
async def home(request: Request, visit, form):
    target = next((path for role, path in HOMES if role in visit.actor.roles), None)
    if target:
        return RedirectResponse(target, status_code=303)
    return render(request, "refused.html", visit, 403, title="没有可用的功能",
                  reason="您的账号没有可在网页控制台使用的角色；请联系系统管理员。")


ROUTES = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/password", password, methods=["GET", "POST"]),
    Route("/", home, methods=["GET"]),
]
