"""The console's integrations page: admins only, CSRF-protected, the key and secret shown once after create/rotate."""

import re

from sqlalchemy import select

from core.database import session_scope
from integrations import service
from integrations.models import Integration
from tests.console.test_console import console, logged_in, post  # noqa: F401 (console is a fixture)
from ticketing.models import TicketEvent

KEY = re.compile(r'value="(mak_[A-Za-z0-9_-]+)"')
PATH = "/console/admin/integrations"


def test_admin_creates_sees_the_key_once_and_disables(console):  # noqa: F811
    admin, _ = logged_in(console, "boss", role="admin")
    created = post(admin, PATH, {"slug": "shop", "name": "商城", "allow_binding": "1"})
    assert created.status_code == 200 and "只显示这一次" in created.text
    assert created.headers["cache-control"] == "no-store"
    key = KEY.search(created.text).group(1)
    with session_scope() as db_session:
        assert service.authenticate_key(db_session=db_session, api_key=key).allow_binding
    listing = admin.get(PATH)
    assert "shop" in listing.text and key[: service.DISPLAY_PREFIX_CHARS] in listing.text
    assert key not in listing.text, "the key is not shown again"

    no_binding = post(admin, PATH, {"slug": "kiosk", "name": "自助机"})
    assert no_binding.status_code == 200
    disabled = post(admin, f"{PATH}/shop/disable")
    assert disabled.status_code == 303
    with session_scope() as db_session:
        rows = {row.slug: row for row in db_session.scalars(select(Integration))}
        actions = set(db_session.scalars(select(TicketEvent.action)))
    assert not rows["shop"].enabled and not rows["kiosk"].allow_binding
    assert {"integration_created", "integration_disabled"} <= actions

    rotated = post(admin, f"{PATH}/shop/rotate")
    new_key = KEY.search(rotated.text).group(1)
    assert new_key != key
    taken = post(admin, PATH, {"slug": "shop", "name": "again"})
    assert taken.status_code == 303
    reserved = post(admin, PATH, {"slug": "legacy", "name": "x"}, follow_redirects=True)
    assert "reserved" in reserved.text


def test_agents_and_strangers_cannot_use_the_page(console):  # noqa: F811
    agent, _ = logged_in(console, "agent1")
    assert agent.get(PATH).status_code == 403
    assert post(agent, PATH, {"slug": "shop", "name": "x"}).status_code == 403
    stranger = console.browser()
    assert stranger.get(PATH).status_code in (303, 401)
    admin, _ = logged_in(console, "boss", role="admin")
    without_token = admin.post(PATH, data={"slug": "shop", "name": "x"})
    assert without_token.status_code == 403
    with session_scope() as db_session:
        assert db_session.scalar(select(Integration)) is None
