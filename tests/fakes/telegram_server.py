"""A scriptable fake of the Telegram Bot API, so adapter tests never need Telegram or a real bot.

Real HTTP on 127.0.0.1 (stdlib only) so the adapter runs python-telegram-bot's true client path:
``/bot<token>/<method>`` URLs, form/JSON/multipart bodies, the ``{"ok": ...}`` envelope, the HTTP
statuses PTB maps to RetryAfter, Conflict and InvalidToken, and real long polling. In-process:
``with FakeTelegram() as fake``, then ``Bot(fake.token, base_url=fake.url, base_file_url=fake.file_url)``;
as a process: ``python tests/fakes/telegram_server.py [--port N] [--token T ...]`` prints the listening line.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import re
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

try:
    from tests.fakes._threaded import QuietHandler, QuietServer, ThreadedServer
except ModuleNotFoundError:  # run by hand as a script: this directory is on sys.path
    from _threaded import QuietHandler, QuietServer, ThreadedServer  # type: ignore[no-redef]

Json = dict[str, Any]
TOKEN = "123456789:TEST-fake-token"  # the digits before ":" are the bot's user id, as on Telegram
MAX_POLL = 2.0  # long polls wait at most this long whatever timeout is asked, to keep tests fast
METHODS = ("getMe", "deleteWebhook", "setMyCommands", "getUpdates", "sendMessage", "sendChatAction",
           "sendDocument", "sendPhoto", "getFile")  # Telegram matches method names case-insensitively
FAIL_KEYS = {"error_code", "description", "retry_after", "delay"}
DESCRIPTIONS = {403: "Forbidden: bot was blocked by the user", 429: "Too Many Requests: retry after {retry_after}",
                409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
                     "is running"}  # other codes get their HTTP phrase ("Unauthorized", "Bad Request", ...)
TEXT_FIELDS = {"text", "caption", "parse_mode", "action", "file_id", "document", "photo"}  # never JSON-decoded
HTML_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a", "code",
             "pre", "blockquote", "tg-emoji"}  # what Telegram's HTML parse_mode accepts
TAG = re.compile(r"</?([A-Za-z][\w-]*)")
FILE_FIELDS = ("file_id", "file_unique_id", "file_size")


class ApiError(Exception):
    """A Telegram error answer; its HTTP status is error_code, which is what PTB looks at."""

    def __init__(self, code: int, description: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(code)
        self.code = code
        phrase = next((s.phrase for s in HTTPStatus if s.value == code), f"Error {code}")
        description = description or DESCRIPTIONS.get(code, phrase).format(retry_after=retry_after)
        self.body = {"ok": False, "error_code": code, "description": description} | (
            {"parameters": {"retry_after": retry_after}} if retry_after is not None else {})


def _decode(name: str, value: str) -> Any:
    """PTB JSON-encodes every non-string form value (ids, lists, dicts): undo it, as Telegram does."""
    try:
        return value if name in TEXT_FIELDS else json.loads(value)
    except ValueError:
        return value


def _check_html(text: Any, parse_mode: Any) -> None:
    """Refuse unknown tags like Telegram, so "<bad>" (or a stray "<br>") tests plain-text fallback."""
    for m in TAG.finditer(text) if str(parse_mode).lower() == "html" and isinstance(text, str) else ():
        if m[1].lower() not in HTML_TAGS:
            raise ApiError(400, f"Bad Request: can't parse entities: Unsupported start tag \"{m[1]}\" "
                                f"at byte offset {len(text[:m.start()].encode())}")


class FakeTelegram(ThreadedServer):
    """The fake's state and its server thread; the admin endpoints call the same public methods.

    One condition guards all state, since handlers run on many threads; it is notified when
    updates arrive, so long polls wake at once. ``url``/``file_url`` are PTB's base URLs.
    """

    def __init__(self, tokens: Iterable[str] = (TOKEN,), port: int = 0) -> None:
        self.tokens = list(tokens)
        self.token, self.port, self.url, self.file_url = self.tokens[0], port, "", ""  # URLs set by start()
        self.cond = threading.Condition()
        self.reset()

    def start(self) -> str:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.fake = self
        self.port = self._run(server, "fake-telegram")
        self.url, self.file_url = f"http://127.0.0.1:{self.port}/bot", f"http://127.0.0.1:{self.port}/file/bot"
        return self.url

    def reset(self) -> None:
        with self.cond:
            self.updates: dict[str, list[tuple[int, Any]]] = {t: [] for t in self.tokens}
            self.polls: dict[str, int] = {}  # token -> generation of its newest getUpdates
            self.fails: dict[str, deque[Json]] = {}
            self.records: list[Json] = []
            self.files: dict[str, Json] = {}  # file_id -> Telegram's file fields plus "data"
            # update ids are per bot, as on Telegram; serial numbers messages and files
            self.next_update, self.serial = dict.fromkeys(self.tokens, 1), itertools.count(1)
            self.cond.notify_all()

    def bot(self, token: str | None = None) -> Json:
        """The bot's User: its id is the token's number, as on Telegram."""
        bot_id = int(head) if (head := (token or self.token).split(":")[0]).isdigit() else 1
        return {"id": bot_id, "is_bot": True, "first_name": "Hermes (fake)", "username": f"fake_{bot_id}_bot"}

    def queue(self, *updates: Any, token: str | None = None) -> list[Any]:
        """Queue any JSON; dicts lacking an int update_id get the next one, other items an internal id."""
        token, queued = token or self.token, []
        with self.cond:
            for item in updates:
                uid = item.get("update_id") if isinstance(item, dict) else None
                if not isinstance(uid, int) or isinstance(uid, bool):
                    uid = self.next_update[token]
                    if isinstance(item, dict) and "update_id" not in item:
                        item = {"update_id": uid, **item}
                self.next_update[token] = max(self.next_update[token], uid + 1)
                self.updates[token].append((uid, item))
                queued.append(item)
            self.cond.notify_all()
        return queued

    def poll(self, token: str, params: Json) -> list[Any]:
        """getUpdates: offset confirms (drops) older updates; wait for one until timeout, capped."""
        offset, limit = int(params.get("offset") or 0), min(max(int(params.get("limit") or 100), 1), 100)
        deadline = time.monotonic() + min(max(float(params.get("timeout") or 0), 0), MAX_POLL)
        with self.cond:
            generation = self.polls[token] = self.polls.get(token, 0) + 1
            self.cond.notify_all()  # a poll still waiting on this token now ends in 409, as on Telegram
            pending = self.updates[token]
            pending[:] = pending[offset:] if offset < 0 else [u for u in pending if u[0] >= offset]
            while True:
                if self.polls.get(token, generation) != generation:
                    raise ApiError(409)
                pending = self.updates[token]  # re-read: reset() replaces it
                if pending or (left := deadline - time.monotonic()) <= 0:
                    return [item for _, item in pending[:limit]]
                self.cond.wait(left)

    def fail(self, method: str, *responses: Json, after: int = 0) -> None:
        """Script the next answers of a method ("*": any method) as errors, one used per call;
        ``after``: let that many calls through first (a reply's first part, not its second)."""
        good = all(isinstance(r, dict) and set(r) <= FAIL_KEYS and isinstance(r.get("error_code"), int)
                   for r in responses)
        if not responses or not good:  # reject typos loudly instead of silently succeeding
            raise TypeError(f"bad responses {list(responses)!r}: need error_code, keys from {sorted(FAIL_KEYS)}")
        with self.cond:
            self.fails.setdefault(method, deque()).extend([None] * after + list(responses))

    def calls(self, method: str | None = None, sent: bool = False) -> list[Json]:
        """Recorded API calls (token, method, params, time, status); ``sent``: send* that succeeded."""
        with self.cond:
            return [dict(c) for c in self.records if (method is None or c["method"] == method)
                    and (not sent or (c["method"].startswith("send") and c["status"] == 200))]

    def sent(self, method: str | None = None) -> list[Json]:
        """What users would see: accepted send* calls, in order."""
        return self.calls(method, sent=True)

    def add_file(self, data: bytes, file_name: str = "file.txt", file_id: str | None = None,
                 folder: str = "documents", mime_type: str | None = None) -> Json:
        """Register bytes for getFile and the /file/ URL to serve; returns Telegram's file fields."""
        n, extension = next(self.serial), file_name.rpartition(".")[2] if "." in file_name else "bin"
        info = {"file_id": file_id or f"fake-file-{n}", "file_unique_id": f"u{n}", "file_size": len(data),
                "file_path": f"{folder}/file_{n}.{extension}", "file_name": file_name, "mime_type": mime_type}
        with self.cond:
            self.files[info["file_id"]] = info | {"data": data}
        return info

    def file(self, key: str, by: str = "file_id") -> Json:
        """A registered file by file_id (getFile: 400 if unknown) or by file_path (download: 404)."""
        with self.cond:
            if found := [f for f in self.files.values() if f[by] == key]:
                return found[0]
        raise ApiError(400, "Bad Request: invalid file_id") if by == "file_id" else ApiError(404)

    def call(self, token: str, method: str, params: Json, uploads: dict[str, Json]) -> Any:
        """One Bot API method: its result, or ApiError for what Telegram would refuse."""
        if method == "getMe":
            return self.bot(token) | {"can_join_groups": True, "can_read_all_group_messages": False}
        if method in ("deleteWebhook", "setMyCommands", "sendChatAction"):
            return True
        if method == "getUpdates":
            return self.poll(token, params)
        if method == "getFile":
            return {k: self.file(str(params.get("file_id")))[k] for k in (*FILE_FIELDS, "file_path")}
        if method == "sendMessage":
            if not isinstance(text := params.get("text"), str) or not text.strip():
                raise ApiError(400, "Bad Request: message text is empty")
            if len(text) > 4096:
                raise ApiError(400, "Bad Request: message is too long")
            _check_html(text, params.get("parse_mode"))
            return self.outgoing(token, params, {"text": text})
        kind, caption = ("document" if method == "sendDocument" else "photo"), params.get("caption") or ""
        _check_html(caption, params.get("parse_mode"))
        if upload := uploads.get(kind):
            info = self.add_file(upload["data"], upload["filename"] or kind, None, kind + "s", upload["mime_type"])
        else:  # re-sending a known file_id, as Telegram allows
            info = self.file(str(params.get(kind)))
        media = ({"document": {k: info[k] for k in (*FILE_FIELDS, "file_name", "mime_type")}} if kind == "document"
                 else {"photo": [{k: info[k] for k in FILE_FIELDS} | {"width": 800, "height": 600}]})
        return self.outgoing(token, params, media | ({"caption": caption} if caption else {}))

    def outgoing(self, token: str, params: Json, content: Json) -> Json:
        """The Message Telegram returns for a send: a new id, the chat (type guessed from the id), the topic."""
        chat_id = params["chat_id"]
        chat = {"id": chat_id, "type": "private" if isinstance(chat_id, int) and chat_id > 0 else "supergroup"}
        message = {"message_id": next(self.serial), "from": self.bot(token), "chat": chat,
                   "date": int(time.time())}
        if thread := params.get("message_thread_id"):
            message |= {"message_thread_id": thread, "is_topic_message": True}
        return message | content

    # Realistic updates, queued and returned. All take topic_id=, forum=, reply_to_bot=, mention=, token=.
    def private_message(self, user_id: int, text: str, **kw: Any) -> Json:
        return self._message(user_id, user_id, text, **kw)

    def group_message(self, chat_id: int, user_id: int, text: str, reply_to_bot: bool = False,
                      mention: str | bool | None = None, **kw: Any) -> Json:
        return self._message(chat_id, user_id, text, reply_to_bot=reply_to_bot, mention=mention, **kw)

    def topic_message(self, chat_id: int, topic_id: int, user_id: int, text: str, **kw: Any) -> Json:
        return self._message(chat_id, user_id, text, topic_id=topic_id, **kw)

    def document_message(self, chat_id: int, user_id: int, data: bytes, file_name: str = "file.txt",
                         caption: str | None = None, mime_type: str = "text/plain", **kw: Any) -> Json:
        info = self.add_file(data, file_name, mime_type=mime_type)
        document = {k: info[k] for k in (*FILE_FIELDS, "file_name", "mime_type")}
        return self._message(chat_id, user_id, caption, media={"document": document}, **kw)

    def photo_message(self, chat_id: int, user_id: int, data: bytes, caption: str | None = None,
                      **kw: Any) -> Json:
        files = [self.add_file(data, "photo.jpg", folder="photos") for _ in range(2)]
        sizes = [{k: f[k] for k in FILE_FIELDS} | {"width": w, "height": h}  # Telegram lists smallest first
                 for f, (w, h) in zip(files, ((90, 68), (800, 600)), strict=False)]
        return self._message(chat_id, user_id, caption, media={"photo": sizes}, **kw)

    def _message(self, chat_id: int, user_id: int, text: str | None, *, topic_id: int | None = None,
                 forum: bool = False, reply_to_bot: bool = False, mention: str | bool | None = None,
                 media: Json | None = None, token: str | None = None) -> Json:
        """A user writes in a private chat (chat id = user id) or a supergroup, shaped as on Telegram.

        In a topic, messages carry message_thread_id, is_topic_message and a reply_to_message to the
        topic's creation; in the General topic (forum=True, no topic_id) they carry none of these.
        """
        now = int(time.time())
        user = {"id": user_id, "is_bot": False, "first_name": f"User{user_id}", "username": f"user{user_id}"}
        if chat_id == user_id:
            chat: Json = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
        else:
            chat = {"id": chat_id, "type": "supergroup", "title": f"Group {chat_id}"}
            chat |= {"is_forum": True} if forum or topic_id is not None else {}
        message: Json = {"message_id": next(self.serial), "from": user, "chat": chat, "date": now}
        thread: Json = {"message_thread_id": topic_id, "is_topic_message": True} if topic_id is not None else {}
        if topic_id is not None:
            message["reply_to_message"] = {"message_id": topic_id, "from": user, "chat": chat, "date": now,
                                           "forum_topic_created": {"name": f"Topic {topic_id}",
                                                                   "icon_color": 7322096}} | thread
        if reply_to_bot:
            message["reply_to_message"] = {"message_id": next(self.serial), "from": self.bot(token),
                                           "chat": chat, "date": now, "text": "an earlier reply"} | thread
        entities: list[Json] = []  # offsets count UTF-16 units; usernames and commands are ASCII: len() works
        if mention and text is not None:
            name = self.bot(token)["username"] if mention is True else str(mention).lstrip("@")
            text = f"@{name} {text}"
            entities.append({"type": "mention", "offset": 0, "length": len(name) + 1})
        if text is not None:
            if text.startswith("/"):
                entities.append({"type": "bot_command", "offset": 0, "length": len(text.split()[0])})
            message |= {"caption" if media else "text": text}
            message |= {"caption_entities" if media else "entities": entities} if entities else {}
        return self.queue({"message": message | thread | (media or {})}, token=token)[0]


class _Server(QuietServer):
    fake: FakeTelegram


class _Handler(QuietHandler):
    server: _Server

    def _send(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _params(self, raw: bytes) -> tuple[Json, dict[str, Json] | None]:
        """JSON, urlencoded or multipart parameters (uploads recorded as metadata), and the uploads."""
        kind, params, uploads = self.headers.get("Content-Type", ""), Json(), dict[str, Json]()
        if kind.startswith("application/json") and raw:
            if not isinstance(body := json.loads(raw), dict):
                raise ValueError("not a JSON object")
            return body, uploads
        if kind.startswith("multipart/form-data"):
            form = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {kind}\r\n\r\n".encode() + raw)
            for part in form.iter_parts():
                name, data = part.get_param("name", header="content-disposition"), part.get_payload(decode=True)
                if part.get_filename() is None:
                    params[name] = data.decode()
                else:
                    uploads[name] = {"filename": part.get_filename(), "size": len(data),
                                     "mime_type": part.get_content_type(), "data": data}
        elif raw:
            params |= {k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
        params = {k: _decode(k, v) for k, v in params.items()}
        return params | {k: {f: v for f, v in u.items() if f != "data"} for k, u in uploads.items()}, uploads

    def do_GET(self) -> None:
        """One router for GET and POST: Telegram accepts both, and the admin endpoints are few."""
        fake, url = self.server.fake, urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # PTB always sends a length
        path = unquote(url.path)  # PTB sends the token's ":" as %3A in file URLs
        if path.startswith("/bot"):
            self._api(fake, *path[4:].partition("/")[::2], raw)
        elif path.startswith("/file/bot"):
            token, _, file_path = path[9:].partition("/")
            try:
                if token not in fake.tokens:
                    raise ApiError(401)
                self._send(200, fake.file(file_path, by="file_path")["data"], "application/octet-stream")
            except ApiError as error:
                self._send(error.code, error.body)
        else:
            try:
                self._admin(fake, (self.command, path), parse_qs(url.query).get("method", [None])[0], raw)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:  # bad admin input: say why
                self._send(400, {"ok": False, "error_code": 400, "description": f"{type(exc).__name__}: {exc}"})

    do_POST = do_GET

    def _admin(self, fake: FakeTelegram, route: tuple[str, str], method: str | None, raw: bytes) -> None:
        body = json.loads(raw) if raw else None
        if route == ("POST", "/_updates"):  # a list, one update, or {"updates": [...], "token": ...}
            wrapped = isinstance(body, dict) and "updates" in body
            updates = body["updates"] if wrapped else body if isinstance(body, list) else [body]
            queued = fake.queue(*updates, token=body.get("token") if wrapped else None)
            self._send(200, {"queued": len(queued), "updates": queued})
        elif route == ("POST", "/_fail"):  # {"method": ..., "responses": [...]} or one response inline
            steps = body.get("responses", [{k: v for k, v in body.items() if k not in ("method", "after")}])
            fake.fail(str(body.get("method", "*")), *steps, after=int(body.get("after", 0)))
            self._send(200, {"queued": len(steps)})
        elif route == ("POST", "/_files"):
            data = base64.b64decode(body["base64"]) if "base64" in body else str(body.get("text", "")).encode()
            self._send(200, fake.add_file(data, body.get("file_name", "file.txt"), body.get("file_id"),
                                          mime_type=body.get("mime_type")))
        elif route in (("GET", "/_sent"), ("GET", "/_calls")):
            self._send(200, fake.calls(method, sent=route[1] == "/_sent"))
        elif route == ("POST", "/_reset"):
            fake.reset()
            self._send(200, {"reset": True})
        else:
            self._send(404, ApiError(404).body)

    def _api(self, fake: FakeTelegram, token: str, name: str, raw: bytes) -> None:
        method = {m.lower(): m for m in METHODS}.get(name.lower(), name)
        try:
            params, uploads = self._params(raw)
        except ValueError:  # undecodable body: still recorded, then refused as Telegram does
            params, uploads = {"unparsable": raw.decode(errors="replace")}, None
        call = {"token": token, "method": method, "params": params, "time": time.time(), "status": None}
        with fake.cond:
            fake.records.append(call)  # before answering, so a waiting long poll shows in /_calls
            step = next((fake.fails[m].popleft() for m in (method, "*") if fake.fails.get(m)), None) \
                if token in fake.tokens else None  # a 401 for a wrong token leaves the script alone
        try:
            if token not in fake.tokens:
                raise ApiError(401)
            if step:
                time.sleep(float(step.get("delay", 0)))
                raise ApiError(step["error_code"], step.get("description"), step.get("retry_after"))
            if method not in METHODS:
                raise ApiError(404)
            if uploads is None:
                raise ApiError(400, "Bad Request: can't parse request body")
            try:
                status, body = 200, {"ok": True, "result": fake.call(token, method, params, uploads)}
            except (TypeError, ValueError, KeyError) as exc:  # e.g. offset="abc": a 400, not a crash
                raise ApiError(400, f"Bad Request: bad parameters: {exc}") from exc
        except ApiError as error:
            status, body = error.code, error.body
        with fake.cond:
            call["status"] = status
        self._send(status, body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Telegram Bot API server for tests.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", action="append", help=f"accepted bot token, repeatable (default {TOKEN})")
    args = parser.parse_args(argv)
    stops = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # before start(), so server threads inherit it
    fake = FakeTelegram(args.token or (TOKEN,), args.port)
    print(f"listening on {fake.start().removesuffix('/bot')}", flush=True)  # tests parse this line
    signal.sigwait(stops)  # Ctrl-C and SIGTERM both end here, for a clean shutdown
    fake.stop()


if __name__ == "__main__":
    main()
