"""The fake Telegram server answers python-telegram-bot like the Bot API does, so adapter tests can trust it."""

from __future__ import annotations

import base64
import select
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from telegram import Bot, InputFile
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter

from tests.fakes.telegram_server import FakeTelegram

SCRIPT = Path(__file__).resolve().parents[1] / "fakes" / "telegram_server.py"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # python-telegram-bot is asyncio-only


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    with FakeTelegram() as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(fake.token, base_url=fake.url, base_file_url=fake.file_url) as client:  # calls getMe
        yield client


@pytest.fixture
def admin(fake: FakeTelegram) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url.removesuffix("/bot"), timeout=5) as http:
        yield http


@pytest.mark.anyio
async def test_get_me_is_the_token_owner(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert me.id == 123456789 and me.is_bot and me.username == fake.bot()["username"] == "fake_123456789_bot"
    assert await bot.delete_webhook() is True
    assert await bot.set_my_commands([("ask", "Ask the agent")]) is True
    [commands] = fake.calls("setMyCommands")
    assert commands["params"]["commands"] == [{"command": "ask", "description": "Ask the agent"}]


@pytest.mark.anyio
async def test_queued_updates_parse_as_ptb_objects(fake: FakeTelegram, bot: Bot) -> None:
    fake.private_message(42, "hello")
    fake.topic_message(-100777, 5, 42, "in a topic")
    fake.group_message(-100777, 43, "in general", forum=True)
    fake.group_message(-100888, 44, "hey you", reply_to_bot=True, mention=True)
    fake.private_message(42, "/start now")
    private, topic, general, group, command = await bot.get_updates(timeout=0)
    assert private.message.text == "hello" and private.message.chat.type == "private"
    assert private.message.chat.id == private.message.from_user.id == 42
    assert topic.message.is_topic_message and topic.message.chat.is_forum and topic.message.message_thread_id == 5
    assert topic.message.reply_to_message.forum_topic_created is not None  # Telegram's topic quirk
    assert not general.message.is_topic_message and general.message.message_thread_id is None
    assert general.message.chat.is_forum and general.message.chat.type == "supergroup"
    assert group.message.reply_to_message.from_user.id == (await bot.get_me()).id
    assert group.message.text == f"@{bot.username} hey you" and group.message.entities[0].type == "mention"
    assert command.message.entities[0].type == "bot_command" and command.message.entities[0].length == 6
    assert [u.update_id for u in (private, topic, general, group, command)] == [1, 2, 3, 4, 5]


@pytest.mark.anyio
async def test_offset_confirms_older_updates(fake: FakeTelegram, bot: Bot) -> None:
    ids = [u["update_id"] for u in (fake.private_message(1, "a"), fake.private_message(1, "b"),
                                    fake.private_message(1, "c"))]
    assert [u.message.text for u in await bot.get_updates(limit=2)] == ["a", "b"]
    assert [u.message.text for u in await bot.get_updates(offset=ids[1])] == ["b", "c"]
    assert [u.message.text for u in await bot.get_updates()] == ["b", "c"]  # "a" is gone for good
    assert await bot.get_updates(offset=ids[2] + 1) == ()
    offsets = [c["params"].get("offset") for c in fake.calls("getUpdates")]
    assert offsets == [None, ids[1], None, ids[2] + 1]


@pytest.mark.anyio
async def test_long_poll_waits_then_wakes_on_an_update(fake: FakeTelegram, bot: Bot) -> None:
    start = time.monotonic()
    assert await bot.get_updates(timeout=0.3) == ()
    assert 0.25 < time.monotonic() - start < 1
    threading.Timer(0.2, fake.private_message, (7, "late")).start()
    start = time.monotonic()
    [update] = await bot.get_updates(timeout=5)  # the fake caps waits at 2 s; this one wakes at once
    assert update.message.text == "late" and time.monotonic() - start < 1


@pytest.mark.anyio
async def test_a_second_poller_ends_the_first_with_conflict(fake: FakeTelegram, bot: Bot) -> None:
    async def first_poll() -> None:
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await bot.get_updates(timeout=2)

    async with Bot(fake.token, base_url=fake.url) as other, anyio.create_task_group() as tg:
        tg.start_soon(first_poll)
        await anyio.sleep(0.1)
        start = time.monotonic()
        assert await other.get_updates(timeout=0) == ()  # like a second hermesd on the same token
    assert time.monotonic() - start < 1


@pytest.mark.anyio
async def test_send_message_is_recorded_with_its_thread(fake: FakeTelegram, bot: Bot) -> None:
    message = await bot.send_message(-100777, "<b>answer</b>", parse_mode="HTML", message_thread_id=5,
                                     reply_to_message_id=3)
    assert message.text == "<b>answer</b>" and message.chat.id == -100777 and message.message_thread_id == 5
    await bot.send_chat_action(-100777, "typing", message_thread_id=5)
    second = await bot.send_message(42, "plain")
    assert second.message_id > message.message_id and second.chat.type == "private"
    first, action, plain = fake.sent()
    assert first["method"] == "sendMessage" and first["params"] == {
        "chat_id": -100777, "text": "<b>answer</b>", "parse_mode": "HTML", "message_thread_id": 5,
        "reply_parameters": {"message_id": 3}}
    assert action["params"]["action"] == "typing" and plain["params"]["text"] == "plain"
    assert first["time"] <= action["time"] <= plain["time"]


@pytest.mark.anyio
async def test_bad_html_is_refused_so_plain_text_fallback_can_be_tested(fake: FakeTelegram, bot: Bot) -> None:
    with pytest.raises(BadRequest, match="(?i)can't parse entities"):  # PTB drops "Bad Request: "
        await bot.send_message(1, "oops <bad> tag", parse_mode="HTML")
    await bot.send_message(1, "oops <bad> tag")
    with pytest.raises(BadRequest, match="(?i)message is too long"):  # so chunking can be tested too
        await bot.send_message(1, "x" * 4097)
    [sent] = fake.sent("sendMessage")
    assert "parse_mode" not in sent["params"]
    assert [c["status"] for c in fake.calls("sendMessage")] == [400, 200, 400]


@pytest.mark.anyio
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter() warns on int
async def test_scripted_errors_surface_as_ptb_exceptions(fake: FakeTelegram, bot: Bot) -> None:
    fake.fail("sendMessage", {"error_code": 429, "retry_after": 1}, {"error_code": 500})
    with pytest.raises(RetryAfter, match="Retry in 1"):
        await bot.send_message(1, "x")
    with pytest.raises(NetworkError, match="Internal Server Error"):
        await bot.send_message(1, "x")
    await bot.send_message(1, "x")
    assert [c["status"] for c in fake.calls("sendMessage")] == [429, 500, 200]
    assert len(fake.sent()) == 1
    fake.fail("getUpdates", {"error_code": 409, "description": "Conflict: terminated by other getUpdates request"})
    with pytest.raises(Conflict, match="terminated by other"):
        await bot.get_updates()
    fake.fail("*", {"error_code": 401})
    with pytest.raises(InvalidToken):
        await bot.get_me()


@pytest.mark.anyio
async def test_unknown_token_is_unauthorized(fake: FakeTelegram) -> None:
    with pytest.raises(InvalidToken, match="rejected"):
        async with Bot("999:wrong", base_url=fake.url):
            pass
    assert [(c["token"], c["status"]) for c in fake.calls("getMe")] == [("999:wrong", 401)]


@pytest.mark.anyio
async def test_uploads_are_recorded_and_downloadable(fake: FakeTelegram, bot: Bot) -> None:
    data = bytes(range(256)) * 40 + b"\r\n--tail"
    message = await bot.send_document(5, InputFile(data, filename="report.bin"), caption="the report",
                                      message_thread_id=9)
    await bot.send_photo(5, b"\x89PNG fake", caption="pic")
    document, photo = fake.sent()
    assert document["params"]["document"] == {"filename": "report.bin", "size": len(data),
                                              "mime_type": "application/octet-stream"}
    assert document["params"]["caption"] == "the report" and document["params"]["message_thread_id"] == 9
    assert photo["method"] == "sendPhoto" and photo["params"]["photo"]["size"] == 9
    assert message.document.file_name == "report.bin" and message.caption == "the report"
    file = await bot.get_file(message.document.file_id)
    assert bytes(await file.download_as_bytearray()) == data
    await bot.send_document(6, message.document.file_id)  # re-send by file_id, as Telegram allows


@pytest.mark.anyio
async def test_incoming_files_resolve_through_get_file(fake: FakeTelegram, bot: Bot) -> None:
    fake.document_message(42, 42, b"notes\n", file_name="notes.txt", caption="read this")
    fake.photo_message(-100777, 42, b"jpegbytes", topic_id=5)
    document, photo = await bot.get_updates()
    assert document.message.caption == "read this" and document.message.document.file_name == "notes.txt"
    file = await bot.get_file(document.message.document.file_id)
    assert file.file_size == 6 and bytes(await file.download_as_bytearray()) == b"notes\n"
    biggest = photo.message.photo[-1]
    assert biggest.width == 800 and photo.message.message_thread_id == 5
    assert bytes(await (await bot.get_file(biggest.file_id)).download_as_bytearray()) == b"jpegbytes"
    file_id = fake.add_file(b"registered", "r.txt")["file_id"]
    assert bytes(await (await bot.get_file(file_id)).download_as_bytearray()) == b"registered"
    with pytest.raises(BadRequest, match="(?i)invalid file_id"):
        await bot.get_file("nope")


def test_admin_endpoints_over_http(fake: FakeTelegram, admin: httpx.Client) -> None:
    api = f"/bot{fake.token}"
    unauthorized = {"ok": False, "error_code": 401, "description": "Unauthorized"}
    assert admin.post("/bot999:wrong/getMe").json() == unauthorized
    queued = admin.post("/_updates", json={"updates": [{"message": "not a dict"}, "junk", {"update_id": 50}]})
    assert queued.json()["queued"] == 3 and queued.json()["updates"][0]["update_id"] == 1
    raw = admin.post(f"{api}/getUpdates", json={"offset": 2}).json()  # the raw JSON, as an adapter may read it
    assert raw == {"ok": True, "result": ["junk", {"update_id": 50}]}
    assert admin.post(f"{api}/getUpdates", data={"offset": "51", "timeout": "0"}).json()["result"] == []
    assert [c["params"]["offset"] for c in admin.get("/_calls", params={"method": "getUpdates"}).json()] == [2, 51]
    script = {"method": "sendMessage", "responses": [{"error_code": 429, "retry_after": 3}]}
    assert admin.post("/_fail", json=script).status_code == 200
    limited = admin.post(f"{api}/sendMessage", json={"chat_id": 1, "text": "x"})
    assert limited.status_code == 429 and limited.json() == {
        "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3}}
    assert admin.post("/_fail", json={"method": "sendMessage", "responses": [{"status": 500}]}).status_code == 400
    assert admin.post("/_fail", json={"error_code": 401}).status_code == 200
    assert admin.post(f"{api}/sendChatAction", json={"chat_id": 1, "action": "typing"}).status_code == 401
    sent = admin.post(f"{api}/sendMessage", json={"chat_id": 1, "text": "ok", "message_thread_id": 4}).json()
    assert sent["ok"] and sent["result"]["text"] == "ok" and sent["result"]["message_thread_id"] == 4
    assert [s["params"]["text"] for s in admin.get("/_sent").json()] == ["ok"]
    info = admin.post("/_files", json={"file_id": "f1", "base64": base64.b64encode(b"\x00\x01").decode()}).json()
    assert admin.get(f"/file/bot{fake.token}/{info['file_path']}").content == b"\x00\x01"
    assert admin.get(f"/file/bot{fake.token}/nope").status_code == 404
    assert admin.post(f"{api}/noSuchMethod").json()["error_code"] == 404
    assert admin.post("/_reset").status_code == 200
    assert admin.get("/_calls").json() == [] and admin.post(f"{api}/getUpdates").json()["result"] == []


def test_runs_as_a_script_and_prints_only_the_listening_line() -> None:
    process = subprocess.Popen([sys.executable, str(SCRIPT), "--port", "0", "--token", "1:abc"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 5)
        assert ready, "no listening line within 5 s"
        line = process.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        reply = httpx.post(f"{line.removeprefix('listening on ')}/bot1:abc/getMe")
        assert reply.json()["result"]["id"] == 1
    finally:
        process.terminate()
        out, err = process.communicate(timeout=5)
    assert process.returncode == 0 and out == "" and err == ""
