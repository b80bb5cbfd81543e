"""`setup(app)`: the console's routes under `/ui/`, and `/` sending a browser there."""

from __future__ import annotations

from aiohttp import web

from jobtrail.console import actions, pages
from jobtrail.console.guard import LOGINS, LOGINS_PER_MINUTE, action, login, login_form, logout, page
from jobtrail.console.render import RATE, STATIC, EventRate
from jobtrail.receiver.budget import RefusalBudget


def setup(app: web.Application) -> None:
    app[RATE] = EventRate()
    app[LOGINS] = RefusalBudget(LOGINS_PER_MINUTE)
    router = app.router
    router.add_get("/", _to_console)
    router.add_get("/ui", _to_console)
    router.add_get("/ui/", page(pages.overview))
    router.add_get("/ui/login", login_form)
    router.add_post("/ui/login", login)
    router.add_post("/ui/logout", logout)
    router.add_get("/ui/jobs", page(pages.jobs))
    router.add_get("/ui/jobs/rows", page(pages.job_rows))
    router.add_get("/ui/jobs/{provider}/{job_id}", page(pages.job))
    router.add_get("/ui/outbox", page(pages.outbox))
    router.add_post("/ui/outbox/replay/confirm", action(actions.confirm_bulk))
    router.add_post("/ui/outbox/replay", action(actions.replay_bulk))
    router.add_post("/ui/outbox/{entry_id}/retry", action(actions.retry))
    router.add_post("/ui/outbox/{entry_id}/replay", action(actions.replay_one))
    router.add_get("/ui/deliveries", page(pages.deliveries_page))
    router.add_get("/ui/deliveries/{delivery_id}", page(pages.delivery))
    router.add_static("/ui/static/", STATIC)


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/ui/")
