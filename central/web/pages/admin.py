"""The administrator: users (add, disable, reset a password, 回避 relations), stations (enrolment with the
pairing code, revocation under four eyes) and the standards profiles. Never archive content."""

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from ... import access, changes, profile, stations, users
from ...permissions import Actor
from .. import signin
from ..base import call, console, page, render

ROLE_CHOICES = ("reader", "archivist", "inspector", "security_officer", "auditor", "admin")


def _people(archive, actor: Actor) -> dict:
    access.guard(archive, actor, "user.manage")
    relations: dict[str, list[dict]] = {}
    for r in users.relations(archive):
        relations.setdefault(r["user_id"], []).append(r)
    return {"people": users.listing(archive), "relations": relations}


def _add(archive, actor: Actor, form: dict) -> str:
    """Add the user and set the password they must change at first sign-in; returns their token."""
    access.guard(archive, actor, "user.manage")
    user_id = form.get("user_id", "").strip()
    token = users.add(archive, user_id, form.get("name", "").strip(), form.get("roles", []),
                      [u.strip() for u in form.get("units", "").split(",") if u.strip()],
                      form.get("own_archive_no", "").strip() or None, by=actor.label)
    if form.get("password"):
        users.set_password(archive, user_id, form["password"], by=actor.label)
    return token


def _disable(archive, actor: Actor, user_id: str) -> None:
    access.guard(archive, actor, "user.manage")
    users.disable(archive, user_id, by=actor.label)


def _reset(archive, actor: Actor, user_id: str, password: str) -> None:
    access.guard(archive, actor, "user.manage")
    users.set_password(archive, user_id, password, by=actor.label)
    signin.unlock(archive, user_id)


def _relate(archive, actor: Actor, user_id: str, archive_no: str, relation: str) -> None:
    access.guard(archive, actor, "user.manage")
    users.relate(archive, user_id, archive_no.strip(), relation.strip(), by=actor.label)


def _stations(archive, actor: Actor) -> dict:
    access.guard(archive, actor, "station.read")
    return {"rows": stations.listing(archive), "pending": stations.pending(archive),
            "revocations": changes.listing(archive, actor, "proposed")}


def _approve(archive, actor: Actor, code: str, unit: str) -> dict:
    access.guard(archive, actor, "station.manage")
    return stations.approve(archive, code, unit.strip(), by=actor.label)


def _profiles(archive, actor: Actor) -> list[dict]:
    access.guard(archive, actor, "profile.read")
    home = archive.config.home
    default, units = profile.default_name(archive), profile.assignments(archive)
    rows = []
    for name, path in profile.available(home).items():
        p = profile.load(name, home)
        rows.append({"p": p, "default": name == default, "units": [u["unit"] for u in units if u["profile"] == name],
                     "shipped": path.parent == profile.SHIPPED_DIR})
    return rows


@page
async def people(request: Request, visit, form):
    found = await call(request, _people, console(request).archive, visit.actor)
    return render(request, "admin_users.html", visit, roles=ROLE_CHOICES, **found)


@page
async def add(request: Request, visit, form):
    fields = {k: str(v) for k, v in form.items() if k != "roles"}
    fields["roles"] = [str(r) for r in form.getlist("roles")]
    token = await call(request, _add, console(request).archive, visit.actor, fields)
    found = await call(request, _people, console(request).archive, visit.actor)
    return render(request, "admin_users.html", visit, roles=ROLE_CHOICES, added=fields["user_id"], token=token,
                  **found)


@page
async def disable(request: Request, visit, form):
    await call(request, _disable, console(request).archive, visit.actor, request.path_params["uid"])
    return RedirectResponse("/admin", status_code=303)


@page
async def reset(request: Request, visit, form):
    await call(request, _reset, console(request).archive, visit.actor, request.path_params["uid"],
               str(form.get("password", "")))
    return RedirectResponse("/admin", status_code=303)


@page
async def relate(request: Request, visit, form):
    await call(request, _relate, console(request).archive, visit.actor, request.path_params["uid"],
               str(form.get("archive_no", "")), str(form.get("relation", "")))
    return RedirectResponse("/admin", status_code=303)


@page
async def station_list(request: Request, visit, form):
    found = await call(request, _stations, console(request).archive, visit.actor)
    return render(request, "admin_stations.html", visit, **found)


@page
async def approve(request: Request, visit, form):
    await call(request, _approve, console(request).archive, visit.actor, str(form.get("code", "")),
               str(form.get("unit", "")))
    return RedirectResponse("/admin/stations", status_code=303)


@page
async def revoke(request: Request, visit, form):
    await call(request, changes.propose, console(request).archive, visit.actor, "revoke_station",
               {"station_id": request.path_params["sid"]}, str(form.get("reason", "")))
    return RedirectResponse("/admin/stations", status_code=303)


@page
async def profiles(request: Request, visit, form):
    rows = await call(request, _profiles, console(request).archive, visit.actor)
    return render(request, "admin_profiles.html", visit, rows=rows)


ROUTES = [
    Route("/admin", people, methods=["GET"]),
    Route("/admin/users", add, methods=["POST"]),
    Route("/admin/users/{uid}/disable", disable, methods=["POST"]),
    Route("/admin/users/{uid}/password", reset, methods=["POST"]),
    Route("/admin/users/{uid}/relate", relate, methods=["POST"]),
    Route("/admin/stations", station_list, methods=["GET"]),
    Route("/admin/stations/approve", approve, methods=["POST"]),
    Route("/admin/stations/{sid}/revoke", revoke, methods=["POST"]),
    Route("/admin/profiles", profiles, methods=["GET"]),
]
