"""Websockets through the real ASGI app (``portal.asgi.application``) and the real Redis channel
layer from settings: origin check, session and bearer authentication, and the ping/pong round
trip that travels through Redis ``group_send``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from django.test import Client
from django.utils import timezone

from conftest import PASSWORD
from portal import services
from portal.asgi import application
from portal.consumers import CLOSE_UNAUTHENTICATED
from portal.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)

# Generous: a slow machine must never turn into a failure; nothing here asserts a duration.
TIMEOUT = 15
GOOD_ORIGIN = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    """Run an async test body on its own event loop; sync DB calls land on this thread."""
    async_to_sync(coro_fn)()


def communicator(*extra: tuple[bytes, bytes], origin: bytes = b"http://localhost") -> Any:
    headers = [(b"origin", origin), (b"host", b"localhost"), *extra]
    return WebsocketCommunicator(application, "/ws/ping/", headers=headers)


def session_cookie(username: str) -> tuple[bytes, bytes]:
    """Log in through Django's real login machinery and return the session cookie header."""
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    sessionid = client.cookies[settings.SESSION_COOKIE_NAME].value
    return (b"cookie", f"{settings.SESSION_COOKIE_NAME}={sessionid}".encode())


def bearer_header(secret: str) -> tuple[bytes, bytes]:
    return (b"authorization", f"Bearer {secret}".encode())


async def ping(conn: Any, echo: str) -> dict[str, Any]:
    await conn.send_json_to({"type": "ping", "echo": echo})
    message: dict[str, Any] = await conn.receive_json_from(timeout=TIMEOUT)
    return message


def assert_refused(*headers: tuple[bytes, bytes], origin: bytes = b"http://localhost") -> int:
    """Connect and assert the server closed instead of accepting; return the close code."""
    codes: list[int] = []

    async def body() -> None:
        conn = communicator(*headers, origin=origin)
        try:
            connected, code = await conn.connect(timeout=TIMEOUT)
            assert connected is False, "the websocket was accepted"
            codes.append(code)
        finally:
            await conn.disconnect(timeout=TIMEOUT)

    run(body)
    return codes[0]


# --- the channel layer --------------------------------------------------------------------


def test_the_channel_layer_in_settings_is_redis_not_in_memory():
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    [host] = layer.hosts
    assert host["address"] == settings.REDIS_URL


def test_the_channel_layer_has_no_socket_timeout_to_cut_its_blocking_reads():
    """redis-py 8 defaults socket_timeout to 5 s, equal to the layer's blocking BZPOPMIN: every
    idle consumer then dies with "Timeout reading from ...". The setting must switch it off."""
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    pool = layer.create_pool(0)
    assert pool.connection_kwargs["socket_timeout"] is None


def test_a_message_crosses_between_two_layer_instances_through_redis():
    """Two layer objects share nothing but the Redis server, so delivery proves Redis carries it."""
    config: Any = settings.CHANNEL_LAYERS["default"]["CONFIG"]

    async def body() -> None:
        sender, receiver = RedisChannelLayer(**config), RedisChannelLayer(**config)
        try:
            channel = await receiver.new_channel()
            await sender.send(channel, {"type": "hello", "n": 7})
            assert await receiver.receive(channel) == {"type": "hello", "n": 7}
        finally:
            await sender.flush()
            await receiver.flush()

    run(body)


# --- anonymous and origin ---------------------------------------------------------------


def test_it_refuses_an_anonymous_websocket():
    assert assert_refused() == CLOSE_UNAUTHENTICATED


def test_it_refuses_a_websocket_from_a_disallowed_origin(alice):
    cookie = session_cookie("alice")
    # The same cookie from the right origin is accepted (see the session test), so the origin
    # alone is what makes the difference; the validator refuses before authentication runs.
    code = assert_refused(cookie, origin=b"http://evil.example")
    assert code != CLOSE_UNAUTHENTICATED


def test_it_refuses_a_websocket_without_an_origin_header(alice):
    cookie = session_cookie("alice")

    async def body() -> None:
        conn = WebsocketCommunicator(
            application, "/ws/ping/", headers=[(b"host", b"localhost"), cookie]
        )
        try:
            connected, _ = await conn.connect(timeout=TIMEOUT)
            assert connected is False
        finally:
            await conn.disconnect(timeout=TIMEOUT)

    run(body)


# --- session cookie -----------------------------------------------------------------------


def test_a_session_user_gets_a_pong_through_the_channel_layer(alice):
    cookie = session_cookie("alice")

    async def body() -> None:
        conn = communicator(cookie)
        try:
            connected, _ = await conn.connect(timeout=TIMEOUT)
            assert connected is True
            pong = await ping(conn, "x")
            assert pong == {"type": "pong", "user": "alice", "workspace": None, "echo": "x"}
        finally:
            await conn.disconnect(timeout=TIMEOUT)

    run(body)


def test_a_pong_reaches_every_socket_of_the_user_and_no_one_else(alice, bob):
    """The pong is a group_send to the user's group: a second socket of the same user gets it
    too (only a real channel layer can do that), and another user's socket does not."""
    alice_cookie, bob_cookie = session_cookie("alice"), session_cookie("bob")

    async def body() -> None:
        first, second, other = (
            communicator(alice_cookie),
            communicator(alice_cookie),
            communicator(bob_cookie),
        )
        try:
            for conn in (first, second, other):
                connected, _ = await conn.connect(timeout=TIMEOUT)
                assert connected is True
            pong = await ping(first, "to-all-my-tabs")
            assert pong["user"] == "alice"
            assert pong["echo"] == "to-all-my-tabs"
            assert await second.receive_json_from(timeout=TIMEOUT) == pong
            # Bob's first message must be his own pong, never alice's.
            bobs = await ping(other, "bob's")
            assert bobs["user"] == "bob"
            assert bobs["echo"] == "bob's"
            # And alice's second socket did not get bob's pong.
            assert await ping(second, "second") == {
                "type": "pong",
                "user": "alice",
                "workspace": None,
                "echo": "second",
            }
            assert await first.receive_json_from(timeout=TIMEOUT) == {
                "type": "pong",
                "user": "alice",
                "workspace": None,
                "echo": "second",
            }
        finally:
            for conn in (first, second, other):
                await conn.disconnect(timeout=TIMEOUT)

    run(body)


def test_an_idle_socket_outlives_the_layers_blocking_read_and_still_gets_its_pong(alice):
    """The consumer blocks on Redis BZPOPMIN for ``brpop_timeout`` seconds at a time; staying
    idle past that must not kill it (redis-py 8's default socket timeout did, after 5 s)."""
    cookie = session_cookie("alice")
    idle = RedisChannelLayer.brpop_timeout + 3

    async def body() -> None:
        conn = communicator(cookie)
        try:
            connected, _ = await conn.connect(timeout=TIMEOUT)
            assert connected is True
            await asyncio.sleep(idle)
            assert (await ping(conn, "after a nap"))["echo"] == "after a nap"
        finally:
            await conn.disconnect(timeout=TIMEOUT)

    run(body)


def test_a_session_cookie_for_a_logged_out_session_is_refused(alice):
    client = Client()
    assert client.login(username="alice", password=PASSWORD)
    sessionid = client.cookies[settings.SESSION_COOKIE_NAME].value
    client.logout()
    stale = (b"cookie", f"{settings.SESSION_COOKIE_NAME}={sessionid}".encode())
    assert assert_refused(stale) == CLOSE_UNAUTHENTICATED


def test_a_message_other_than_ping_gets_an_error_and_the_socket_stays_open(alice):
    cookie = session_cookie("alice")

    async def body() -> None:
        conn = communicator(cookie)
        try:
            connected, _ = await conn.connect(timeout=TIMEOUT)
            assert connected is True
            await conn.send_json_to({"type": "subscribe", "topic": "runs"})
            error = await conn.receive_json_from(timeout=TIMEOUT)
            assert error["type"] == "error"
            assert "ping" in error["detail"]
            await conn.send_json_to(["not", "an", "object"])
            assert (await conn.receive_json_from(timeout=TIMEOUT))["type"] == "error"
            # Still open: a ping afterwards is answered.
            assert (await ping(conn, "still here"))["echo"] == "still here"
        finally:
            await conn.disconnect(timeout=TIMEOUT)

    run(body)


# --- bearer tokens ------------------------------------------------------------------------


def test_a_bearer_token_connects_and_the_pong_names_its_workspace(ws, bob, make_token):
    secret = make_token(bob, ws)

    async def body() -> None:
        conn = communicator(bearer_header(secret))
        try:
            connected, _ = await conn.connect(timeout=TIMEOUT)
            assert connected is True
            pong = await ping(conn, "tok")
            assert pong == {
                "type": "pong",
                "user": "bob",
                "workspace": str(ws.uuid),
                "echo": "tok",
            }
        finally:
            await conn.disconnect(timeout=TIMEOUT)

    run(body)


def test_a_bearer_token_wins_over_a_session_cookie_of_another_user(ws, alice, bob, make_token):
    secret = make_token(bob, ws)
    cookie = session_cookie("alice")

    async def body() -> None:
        conn = communicator(cookie, bearer_header(secret))
        try:
            connected, _ = await conn.connect(timeout=TIMEOUT)
            assert connected is True
            pong = await ping(conn, "who")
            assert (pong["user"], pong["workspace"]) == ("bob", str(ws.uuid))
        finally:
            await conn.disconnect(timeout=TIMEOUT)

    run(body)


def test_a_revoked_token_is_refused(ws, bob, make_token):
    secret = make_token(bob, ws)
    token = ApiToken.objects.get(user=bob, workspace=ws)
    services.revoke_token(actor=services.Actor(user=bob), token=token)
    assert assert_refused(bearer_header(secret)) == CLOSE_UNAUTHENTICATED


def test_an_expired_token_is_refused(ws, bob, make_token):
    secret = make_token(bob, ws, expires_at=timezone.now() + timedelta(days=1))
    ApiToken.objects.filter(user=bob, workspace=ws).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert assert_refused(bearer_header(secret)) == CLOSE_UNAUTHENTICATED


def test_a_rejected_token_does_not_fall_back_to_the_session_cookie(ws, alice, bob, make_token):
    """A bad bearer token next to a valid session must not connect as the session's user."""
    secret = make_token(bob, ws)
    token = ApiToken.objects.get(user=bob, workspace=ws)
    services.revoke_token(actor=services.Actor(user=bob), token=token)
    assert assert_refused(session_cookie("alice"), bearer_header(secret)) == CLOSE_UNAUTHENTICATED


def test_a_token_of_an_inactive_user_is_refused(ws, bob, make_token):
    secret = make_token(bob, ws)
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    assert assert_refused(bearer_header(secret)) == CLOSE_UNAUTHENTICATED


@pytest.mark.parametrize(
    "secret",
    ["mlr_" + "0" * 40, "not-a-millrace-token", "mlr_"],
    ids=["unknown-mlr-token", "no-prefix", "prefix-only"],
)
def test_a_garbage_token_is_refused(ws, secret):
    assert assert_refused(bearer_header(secret)) == CLOSE_UNAUTHENTICATED


def test_a_malformed_authorization_header_leaves_the_socket_anonymous(ws, bob, make_token):
    secret = make_token(bob, ws)
    malformed = (b"authorization", f"Bearer {secret} extra".encode())
    assert assert_refused(malformed) == CLOSE_UNAUTHENTICATED
