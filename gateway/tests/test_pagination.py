from __future__ import annotations

import pytest

from accounts.models import User
from gateway.errors import InvalidRequest
from gateway.pagination import page_params, paginate

pytestmark = pytest.mark.django_db


def _users(count: int) -> list[User]:
    return [User.objects.create_user(f"page{i}@example.com") for i in range(count)]


def _serialize(user: User) -> dict[str, str]:
    return {"id": user.public_id}


def test_pages_walk_every_row_once_in_both_orders() -> None:
    users = _users(5)
    ids = [u.public_id for u in users]
    for order, expected in (("asc", ids), ("desc", ids[::-1])):
        seen: list[str] = []
        after = None
        while True:
            query = {"limit": "2", "order": order, **({"after": after} if after else {})}
            page = paginate(User.objects.all(), page_params(query), _serialize)
            seen += [row["id"] for row in page["data"]]
            assert page["first_id"] == page["data"][0]["id"]
            assert page["last_id"] == page["data"][-1]["id"]
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen == expected


def test_jan_last_is_accepted_as_after() -> None:
    users = _users(3)
    page = paginate(User.objects.all(), page_params({"order": "asc", "last": users[0].public_id}), _serialize)
    assert [row["id"] for row in page["data"]] == [users[1].public_id, users[2].public_id]


def test_empty_list_has_null_ids() -> None:
    page = paginate(User.objects.none(), page_params({}), _serialize)
    assert page == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"order": "up"}, "order"),
    ],
)
def test_bad_parameters_are_invalid_requests(query: dict[str, str], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        page_params(query)
    assert caught.value.param == param


def test_unknown_cursor_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as caught:
        paginate(User.objects.all(), page_params({"after": "user_nope"}), _serialize)
    assert caught.value.param == "after"
