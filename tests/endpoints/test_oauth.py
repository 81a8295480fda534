"""The OAuth token is fetched once, reused until shortly before it expires, and refreshed after that."""

from __future__ import annotations

from pydantic import SecretStr

from pipeline.http.auth import OAuthClientCredentials


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_reused_within_the_hour_and_refreshed_before_expiry(sandbox) -> None:
    clock = Clock()
    oauth = OAuthClientCredentials(f"{sandbox.url}/auth/oauth2/token", SecretStr("sandbox-app-id"),
                                   SecretStr("sandbox-app-secret"), clock=clock, refresh_margin=300)
    first = oauth.token()
    for minute in range(0, 55):  # 55 minutes of work
        clock.now = minute * 60
        assert oauth.token() == first
    clock.now = 3600 - 299  # inside the refresh margin
    assert oauth.token() != first
    assert oauth.fetches == 2 and sandbox.state()["data_deletion"]["token_requests"] == 2


def test_a_short_lived_token_is_not_fetched_per_request(sandbox) -> None:
    sandbox.configure({"data_deletion": {"token_lifetime": 120}})  # shorter than the 300 s refresh margin
    clock = Clock()
    oauth = OAuthClientCredentials(f"{sandbox.url}/auth/oauth2/token", SecretStr("sandbox-app-id"),
                                   SecretStr("sandbox-app-secret"), clock=clock, refresh_margin=300)
    for second in range(0, 59):
        clock.now = second
        oauth.token()
    assert oauth.fetches == 1  # reused for the first half of its life
    clock.now = 61
    oauth.token()
    assert oauth.fetches == 2


def test_a_busy_token_endpoint_is_waited_for_as_it_asks_and_a_failure_is_never_ambiguous(sandbox) -> None:
    import pytest

    from pipeline.errors import TransientError

    waits: list[float] = []
    sandbox.faults({"family": "auth", "script": [{"kind": "status", "status": 429, "retry_after": "7"}]})
    oauth = OAuthClientCredentials(f"{sandbox.url}/auth/oauth2/token", SecretStr("sandbox-app-id"),
                                   SecretStr("sandbox-app-secret"), sleep=waits.append)
    with pytest.raises(TransientError) as busy:  # the request's retry waits, not the token lock
        oauth.token()
    assert busy.value.retry_after == 7 and busy.value.may_have_arrived is False and waits == []
    assert oauth.token()

    sandbox.faults({"family": "auth", "rates": [{"rate": 1.0, "kind": "status", "status": 503}]})
    oauth.invalidate()
    with pytest.raises(TransientError) as failed:
        oauth.token()
    # The request the token was for was never sent: retrying it cannot duplicate anything.
    assert failed.value.may_have_arrived is False and "HTTP 503" in str(failed.value)


def test_the_token_key_is_read_whatever_its_case() -> None:
    class Answer:
        status_code, ok, headers = 200, True, {}

        def json(self):
            return {"Access_token": "t0ken", "Expires_in": 3600}

    class Session:
        def post(self, *args, **kwargs):
            return Answer()

    oauth = OAuthClientCredentials("https://auth.example/token", SecretStr("id"), SecretStr("secret"), session=Session())
    assert oauth.token() == "t0ken"
