"""Every listing pages the same way: `cursor` is the previous page's `next_cursor`, and anything else
is refused with 400 INVALID_CURSOR (store.keyset.decode, the one reader of cursors)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.api.conftest import bearer

FORGED = [
    "garbage",
    "-1",
    "99999999999999999999",
    "W10",  # []
    "WyJ4IiwgInkiXQ",  # ["x", "y"]
    "e30",  # {}
    "8J-Yig",  # not UTF-8 JSON
    "A" * 600,
]


def _listings(client: httpx.Client) -> list[str]:
    spec = client.get("/openapi.json").json()
    return sorted(
        path
        for path, item in spec["paths"].items()
        if "get" in item and any(p["name"] == "cursor" for p in item["get"].get("parameters", []))
    )


def test_the_listings_are_known(client: httpx.Client) -> None:
    """The cursor checks below reach every listing (a new one joins them by taking `cursor`)."""
    assert {"/tasks", "/runs", "/runs/upcoming", "/events", "/agents", "/audit"} <= set(_listings(client))


@pytest.mark.parametrize("cursor", FORGED)
def test_a_cursor_no_listing_handed_out_is_400_on_every_listing(
    client: httpx.Client, admin_token: str, cursor: str
) -> None:
    for path in _listings(client):
        concrete = re.sub(r"\{[a-z_]*id\}", "1", path)  # the cursor is read before anything is looked up
        response = client.get(concrete, params={"cursor": cursor}, headers=bearer(admin_token))

        assert response.status_code == 400, (path, response.text)
        assert response.json()["code"] == "INVALID_CURSOR", path
        assert response.json()["details"] == {"path": "cursor"}, path


def test_a_cursor_of_another_listing_is_refused(client: httpx.Client, admin_token: str) -> None:
    """A runs cursor is not an audit cursor: the key's shape is checked, not just its encoding."""
    admin = bearer(admin_token)
    for i in range(3):
        client.post("/agents", json={"name": f"agent-{i}"}, headers=admin)
    cursor = client.get("/agents", params={"limit": 1}, headers=admin).json()["next_cursor"]
    assert cursor

    response = client.get("/audit", params={"cursor": cursor}, headers=admin)

    assert response.status_code == 400 and response.json()["code"] == "INVALID_CURSOR"
