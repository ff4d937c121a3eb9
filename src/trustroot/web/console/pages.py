"""The console's pages and forms (server-rendered with Jinja2; no external assets).

Every page needs a signed-in session (else a redirect to the sign-in page); every form that changes
something needs the session's CSRF token and the scope the same action needs in the operator API
(``read``, ``release``, ``device-admin``, ``disclosure``). Changes go through the fleet's domain
functions, which write the same evidence as the API does.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from trustroot.errors import TrustrootError
from trustroot.fleet import alerts, rollouts
from trustroot.fleet.alerts import AlertNotFound
from trustroot.fleet.console_users import ConsoleLoginRefused, ConsoleSessionView, session_for, sign_in, sign_out
from trustroot.fleet.disclosures import list_disclosures, overdue
from trustroot.fleet.ownership import Owner
from trustroot.fleet.ownership_models import OwnerAccount
from trustroot.fleet.personal_data import delete_owner_data
from trustroot.fleet.service import FleetService, get_service
from trustroot.web.console import views
from trustroot.web.console.security import LOGIN_COOKIE, SESSION_COOKIE, FormError, check_csrf, read_form, same_origin

__all__ = ["router"]

_log = logging.getLogger(__name__)
router = APIRouter(prefix="/console", include_in_schema=False)

_env = Environment(
    loader=PackageLoader("trustroot.web", "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
)
templates = Jinja2Templates(env=_env)

#: The TLS versions the console may set, and those it refuses with the provision they would break.
_TLS_ALLOWED: Final = ("1.2", "1.3")
_TLS_REFUSED: Final = ("1.0", "1.1")


def _fmt_time(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_env.filters["when"] = _fmt_time


def _now(service: FleetService) -> datetime:
    return service.clock()


def _session(request: Request) -> ConsoleSessionView | None:
    token = request.cookies.get(SESSION_COOKIE, "")
    return session_for(get_service(request), token) if token else None


def _page(request: Request, name: str, who: ConsoleSessionView, status: int = 200, **values: Any) -> HTMLResponse:
    service = get_service(request)
    return templates.TemplateResponse(
        request,
        name,
        {"who": who, "product": service.context.product.name, "now": _now(service), **values},
        status_code=status,
    )


def _to_login() -> RedirectResponse:
    return RedirectResponse("/console/login", status_code=303)


def _refuse(request: Request, who: ConsoleSessionView, message: str, status: int) -> HTMLResponse:
    return _page(request, "console/refused.html", who, status=status, message=message)


async def _form_for(request: Request, scope: str) -> tuple[ConsoleSessionView, dict[str, str]] | Response:
    """The session and form of a changing request, or the answer refusing it."""
    who = _session(request)
    if who is None:
        return _to_login()
    if not same_origin(request):
        return _refuse(request, who, "refused: the form was posted from another site", 403)
    try:
        fields = await read_form(request)
    except FormError as exc:
        return _refuse(request, who, str(exc), 400)
    if not check_csrf(fields, who.csrf_token):
        _log.warning("console: CSRF token missing or wrong for %s on %s", who.name, request.url.path)
        return _refuse(request, who, "refused: the form's security token is missing or stale; reload the page", 403)
    if scope not in who.scopes:
        return _refuse(request, who, f"refused: your operator lacks the scope {scope!r}", 403)
    return who, fields


def _reader(scope: str) -> Callable[[Request], ConsoleSessionView | Response]:
    def check(request: Request) -> ConsoleSessionView | Response:
        who = _session(request)
        if who is None:
            return _to_login()
        if scope not in who.scopes:
            return _refuse(request, who, f"refused: your operator lacks the scope {scope!r}", 403)
        return who

    return check


# -- sign-in -----------------------------------------------------------------------------------


def _login_page(request: Request, error: str | None, status: int) -> Response:
    """The sign-in form with a fresh double-submit token (cookie + hidden field)."""
    token = secrets.token_urlsafe(32)
    service = get_service(request)
    response = templates.TemplateResponse(
        request,
        "console/login.html",
        {
            "login_csrf": token,
            "product": service.context.product.name,
            "error": error,
            "who": None,
            "now": _now(service),
        },
        status_code=status,
    )
    response.set_cookie(LOGIN_COOKIE, token, max_age=900, secure=True, httponly=True, samesite="strict", path="/")
    return response


@router.get("/login")
def login_page(request: Request) -> Response:
    return _login_page(request, None, 200)


@router.post("/login")
async def login(request: Request) -> Response:
    service = get_service(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    error = "Sign-in refused: wrong name, password or code, or the login is locked."
    try:
        fields = await read_form(request)
    except FormError as exc:
        fields, error = {}, str(exc)
    if fields and same_origin(request) and check_csrf(fields, expected):
        client = request.client.host if request.client else "?"
        try:
            made = sign_in(
                service,
                fields.get("name", ""),
                fields.get("password", ""),
                fields.get("code", ""),
                client=client,
            )
        except ConsoleLoginRefused:
            pass
        else:
            response: Response = RedirectResponse("/console/", status_code=303)
            response.set_cookie(SESSION_COOKIE, made.token, secure=True, httponly=True, samesite="strict", path="/")
            response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
            return response
    elif fields:
        _log.warning(
            "console sign-in form refused: %s",
            "posted from another origin" if not same_origin(request) else "login token missing or stale",
        )
        error = "Sign-in refused: the form's security token is missing or stale; reload the page."
    return _login_page(request, error, 401)


@router.post("/logout")
async def logout(request: Request) -> Response:
    who = _session(request)
    if who is not None:
        try:
            fields = await read_form(request)
        except FormError:
            fields = {}
        if check_csrf(fields, who.csrf_token):
            sign_out(get_service(request), request.cookies.get(SESSION_COOKIE, ""))
    response = _to_login()
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


# -- fleet -------------------------------------------------------------------------------------


@router.get("/")
def fleet_overview(request: Request, offset: int = 0) -> Response:
    who = _reader("read")(request)
    if isinstance(who, Response):
        return who
    data = views.overview(get_service(request), offset=offset)
    return _page(request, "console/overview.html", who, fleet=data, page=views.PAGE)


@router.get("/devices/{serial}")
def device_page(request: Request, serial: str) -> Response:
    who = _reader("read")(request)
    if isinstance(who, Response):
        return who
    detail = views.device_detail(get_service(request), serial[:128])
    if detail is None:
        return _refuse(request, who, f"no device {serial[:128]!r} in this fleet", 404)
    return _page(request, "console/device.html", who, d=detail)


@router.post("/owners/{owner_id}/delete-data")
async def delete_data(request: Request, owner_id: str) -> Response:
    checked = await _form_for(request, "device-admin")
    if isinstance(checked, Response):
        return checked
    who, fields = checked
    service = get_service(request)
    with service.store.transaction() as session:
        row = session.get(OwnerAccount, owner_id[:64])
    if row is None:
        return _refuse(request, who, "no such owner", 404)
    owner = Owner(id=row.id, public_key=row.public_key, created_at=row.created_at)
    try:
        outcome = delete_owner_data(service, owner, reason="operator-request", actor=who.actor)
    except TrustrootError as exc:
        return _refuse(request, who, str(exc), 409)
    back = fields.get("back", "")
    return _page(
        request,
        "console/deleted.html",
        who,
        receipt=outcome.receipt,
        back=back if back.startswith("/console/") else "/console/",
    )


# -- releases and rollouts ---------------------------------------------------------------------


@router.get("/releases")
def releases_page(request: Request) -> Response:
    who = _reader("read")(request)
    if isinstance(who, Response):
        return who
    service = get_service(request)
    return _page(
        request,
        "console/releases.html",
        who,
        releases=rollouts.list_releases(service),
        rollouts=rollouts.list_rollouts(service),
    )


@router.get("/rollouts/{rollout_id:int}.json")
def rollout_progress(request: Request, rollout_id: int) -> Response:
    who = _reader("read")(request)
    if isinstance(who, Response):
        return JSONResponse({"error": "sign in"}, status_code=401)
    try:
        view = rollouts.get_rollout(get_service(request), rollout_id)
    except TrustrootError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    return JSONResponse(view.as_dict())


@router.post("/rollouts")
async def start_rollout(request: Request) -> Response:
    checked = await _form_for(request, "release")
    if isinstance(checked, Response):
        return checked
    who, fields = checked
    group = fields.get("group", "").strip() or None
    try:
        rollouts.start_rollout(get_service(request), fields.get("release", ""), actor=who.actor, group=group)
    except TrustrootError as exc:
        return _refuse(request, who, str(exc), 409)
    return RedirectResponse("/console/releases", status_code=303)


@router.post("/rollouts/{rollout_id:int}/{action}")
async def change_rollout(request: Request, rollout_id: int, action: str) -> Response:
    checked = await _form_for(request, "release")
    if isinstance(checked, Response):
        return checked
    who, fields = checked
    service = get_service(request)
    reason = fields.get("reason", "").strip()[:200] or None
    try:
        if action == "pause":
            rollouts.pause_rollout(service, rollout_id, actor=who.actor, reason=reason)
        elif action == "resume":
            rollouts.resume_rollout(service, rollout_id, actor=who.actor)
        elif action == "abort":
            rollouts.abort_rollout(service, rollout_id, actor=who.actor, reason=reason)
        else:
            return _refuse(request, who, f"unknown rollout action {action[:20]!r}", 404)
    except TrustrootError as exc:
        return _refuse(request, who, str(exc), 409)
    return RedirectResponse("/console/releases", status_code=303)


# -- alerts ------------------------------------------------------------------------------------


@router.get("/alerts")
def alerts_page(request: Request, show_all: Annotated[int, Query(alias="all", ge=0, le=1)] = 0) -> Response:
    who = _reader("read")(request)
    if isinstance(who, Response):
        return who
    return _page(
        request,
        "console/alerts.html",
        who,
        alerts=views.list_alerts(get_service(request), include_acknowledged=bool(show_all)),
        showing_all=bool(show_all),
    )


@router.post("/alerts/{alert_id:int}/acknowledge")
async def acknowledge_alert(request: Request, alert_id: int) -> Response:
    checked = await _form_for(request, "device-admin")
    if isinstance(checked, Response):
        return checked
    who, _ = checked
    try:
        alerts.acknowledge(get_service(request), alert_id, who.actor)
    except AlertNotFound:
        return _refuse(request, who, "no such alert", 404)
    return RedirectResponse("/console/alerts", status_code=303)


# -- disclosures -------------------------------------------------------------------------------


@router.get("/disclosures")
def disclosures_page(request: Request) -> Response:
    who = _reader("disclosure")(request)
    if isinstance(who, Response):
        return who
    service = get_service(request)
    missed = overdue(service)
    late = {(item.id, item.obligation.value) for item in missed}
    return _page(request, "console/disclosures.html", who, reports=list_disclosures(service), late=late, missed=missed)


# -- compliance --------------------------------------------------------------------------------


def _state_dir(request: Request) -> Path:
    return get_service(request).config.state_dir


@router.get("/compliance")
def compliance_page(request: Request) -> Response:
    who = _reader("read")(request)
    if isinstance(who, Response):
        return who
    found = views.latest_assessment(_state_dir(request))
    return _page(
        request,
        "console/compliance.html",
        who,
        assessment=found[1] if found else None,
        folder=found[0].name if found else None,
        rows=views.guideline_rows(found[1]) if found else [],
    )


@router.get("/compliance/report.html")
def compliance_report(request: Request) -> Response:
    who = _reader("read")(request)
    if isinstance(who, Response):
        return who
    found = views.latest_assessment(_state_dir(request))
    if found is None or not (found[0] / "report.html").is_file():
        return _refuse(request, who, "no assessment yet: run trustroot assess", 404)
    return FileResponse(found[0] / "report.html", media_type="text/html")


# -- security settings -------------------------------------------------------------------------


@router.get("/settings")
def settings_page(request: Request) -> Response:
    who = _reader("read")(request)
    if isinstance(who, Response):
        return who
    return _page(request, "console/settings.html", who, comm=get_service(request).context.communication, note=None)


@router.post("/settings/tls")
async def set_tls(request: Request) -> Response:
    checked = await _form_for(request, "device-admin")
    if isinstance(checked, Response):
        return checked
    who, fields = checked
    wanted = fields.get("min_tls_version", "")
    service = get_service(request)
    if wanted in _TLS_REFUSED:
        _log.warning("console: %s tried to allow TLS %s (refused, 5.5-1)", who.name, wanted)
        return _refuse(
            request,
            who,
            f"refused: allowing TLS {wanted} would break EN 303 645 provision 5.5-1 (communicate securely, "
            "best-practice cryptography); the service accepts TLS 1.2 and 1.3 only",
            409,
        )
    if wanted not in _TLS_ALLOWED:
        return _refuse(request, who, f"unknown TLS version {wanted[:10]!r}: choose 1.2 or 1.3", 400)
    note = (
        f"The minimum TLS version is set in security-context.toml: run "
        f"`trustroot context set communication.min_tls_version {wanted}` and restart the service."
    )
    return _page(request, "console/settings.html", who, comm=service.context.communication, note=note)
