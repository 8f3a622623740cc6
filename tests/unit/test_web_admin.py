"""Admin authentication and audit wording, without a server."""

from __future__ import annotations

import pytest

from gatekeeper.web.admin import AdminError, check_token, describe_request


@pytest.mark.parametrize(
    ("header", "expected", "status", "message"),
    [
        (None, "tok", 401, "admin requests need an 'Authorization: Bearer <token>' header"),
        ("Basic dXNlcg==", "tok", 401, "admin requests need an 'Authorization: Bearer <token>' header"),
        ("Bearer ", "tok", 401, "admin requests need an 'Authorization: Bearer <token>' header"),
        ("Bearer wrong", "tok", 403, "the admin token is not valid"),
        ("Bearer tok", None, 403, "the admin API is disabled: no web admin-token is configured"),
    ],
)
def test_missing_token_is_401_and_wrong_or_unconfigured_is_403(header, expected, status, message):
    with pytest.raises(AdminError) as exc:
        check_token(header, expected)
    assert (exc.value.status, str(exc.value)) == (status, message)


def test_right_token_passes():
    check_token("Bearer tok", "tok")


def test_audit_description_lists_fields_but_never_a_token():
    assert describe_request({"pipeline": "gate", "change": "1,1", "token": "tok"}) == "change=1,1 pipeline=gate"
