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


@pytest.mark.parametrize("reason", ["multi\nline", "red \x1b[31mRED\x1b[0m", "x" * 501])
def test_a_reason_that_would_act_on_an_operators_terminal_or_overflow_a_table_is_refused(reason):
    """A reason is printed in tables and on terminals: one line, no control characters, at most 500 characters
    (the CLI's --reason takes the same rule)."""
    from gatekeeper.cmd.args import reason as cli_reason
    from gatekeeper.web.admin import AutoholdRequest, HoldNodeRequest, parse_request

    for model, body in ((HoldNodeRequest, {"node": "0000000042", "reason": reason}),
                        (AutoholdRequest, {"project": "org/a", "reason": reason})):
        with pytest.raises(AdminError) as caught:
            parse_request(model, body)
        assert caught.value.status == 400 and "the reason" in str(caught.value), caught.value
    with pytest.raises(Exception, match="the reason"):
        cli_reason(reason)
    assert parse_request(HoldNodeRequest, {"node": "0000000042", "reason": "alice: bisecting, ünïcode ok"})
