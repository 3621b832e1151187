"""Hostile input. Fuzzing: schemathesis over the OpenAPI spec (every JSON operation, positive and negative data) and
hypothesis fuzzers on POST /wechat, POST /telegram and the identifier parsers: together ≥ 10,000 cases, no 5xx, no
exception escaping the app, none logged at ERROR. Then one named test per attack: forged and replayed signatures,
oversized bodies, XXE and billion laughs, SQL-looking text, 20 MB uploads, CSRF on console forms.

Fuzzing runs on SQLite only: it looks for crashes in our code, which the database kind does not change (the SQL
injection test runs on both). The embedding model and the per-user rate limit are off, so every fuzzed message
reaches the matcher and the router quickly. Requests go through the ASGI app in-process and exceptions are re-raised
into the test (TestClient(raise_server_exceptions=True), schemathesis' ASGI transport): an unhandled exception fails
with its traceback, a handled 5xx fails on its status, and a caught-and-logged one fails on the ERROR record.
"""

import asyncio
import base64
import collections
import contextlib
import hashlib
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import quote
from xml.sax.saxutils import escape

import pytest
import schemathesis
import xmltodict
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
from sqlalchemy import func, inspect, select
from wechatpy.crypto import WeChatCrypto

from bot.app import create_app
from bot.channels.wechat import inbound
from core import identifiers
from core.database import get_engine, session_scope
from core.messages import IncomingMessage, Reply
from core.outbox.models import OutboxMessage
from integrations.service import USER_ID_MAX_CHARS
from invoices.models import Invoice
from knowledge.models import FaqEntry
from tests.conftest import clear_process_caches, make_integration
from tests.fakes.telegram import TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram import FakeTelegram

ADMIN_TOKEN = "test-admin-token"  # what conftest's app_env sets
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WX_TOKEN = "hostile-token"
WX_APPID = "wx-hostile-app"
WX_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
GH = "gh_merchant_assist"
OPENID = "oHostile-0001"
TG_SECRET = "hostile-secret_Token-1"
TG_HEADERS = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET, "Content-Type": "application/json"}
MB = 1024 * 1024
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# Cases run by each fuzz test, checked against the 10,000 total by the last test of this module.
CASES: collections.Counter[str] = collections.Counter()
FUZZ_TESTS = ("schemathesis", "wechat", "telegram", "identifiers")
MIN_TOTAL_CASES = 10_000
FUZZ = settings(
    derandomize=True,  # the same cases on every run and machine
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)


# --- fixtures and helpers --------------------------------------------------------------------------------------


@pytest.fixture
def env(app_env, monkeypatch) -> str:
    """A fresh database (conftest's app_env) with WeChat configured, embeddings, rate limit and workers off."""
    values = {
        "MATCHER_EMBEDDINGS": "false",
        "INBOUND_MESSAGES_PER_MINUTE": "0",
        "RUN_WORKER_IN_SERVE": "false",
        "WECHAT_TOKEN": WX_TOKEN,
        "WECHAT_APP_ID": WX_APPID,
        "WECHAT_APP_SECRET": "hostile-secret",
        "WECHAT_AES_KEY": WX_AES_KEY,
        "WECHAT_REPLY_BUDGET_SECONDS": "4.0",
        "WECHAT_REQUIRE_ENCRYPTION": "false",  # plain pushes are fuzzed too; refusing them is tested on its own
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    clear_process_caches()
    return app_env


@pytest.fixture
def fake_telegram(env, monkeypatch) -> Iterator[FakeTelegram]:
    """The fake Bot API, and the Telegram webhook configured against it."""
    server = FakeTelegram().start()
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TELEGRAM_TOKEN)
    monkeypatch.setenv("TELEGRAM_SECRET_TOKEN", TG_SECRET)
    monkeypatch.setenv("TELEGRAM_API_BASE", server.api_base)
    clear_process_caches()
    yield server
    server.stop()


@pytest.fixture
def client(env) -> Iterator[TestClient]:
    """The real app, lifespan run; an exception escaping it is raised into the test."""
    with TestClient(create_app(), raise_server_exceptions=True) as test_client:
        yield test_client


@pytest.fixture
def tg_client(fake_telegram) -> Iterator[TestClient]:
    with TestClient(create_app(), raise_server_exceptions=True) as test_client:
        yield test_client


class ErrorLog(logging.Handler):
    """Every record at ERROR or above, from any logger and thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def since(self, start: int) -> list[str]:
        formatter = logging.Formatter("%(name)s: %(message)s")
        return [formatter.format(record) for record in self.records[start:]]


@pytest.fixture
def errors() -> Iterator[ErrorLog]:
    handler = ErrorLog()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


def no_new_errors(errors: ErrorLog, start: int) -> None:
    logged = errors.since(start)
    assert not logged, "exceptions logged at ERROR:\n" + "\n".join(logged)


def wx_sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


NONCES = itertools.count(20240501)


def fresh_nonce() -> str:
    return str(next(NONCES))


def wx_query(*, token: str = WX_TOKEN, timestamp: str | None = None, nonce: str | None = None, **extra: str) -> dict:
    """A signed query; a fresh nonce unless given (WeChat never reuses one for another push)."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or fresh_nonce()
    return {"signature": wx_sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, **extra}


def wx_text(content: str, *, msg_id: int | str = 1, openid: str = OPENID) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{GH}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{escape(content)}</Content><MsgId>{msg_id}</MsgId></xml>"
    )


def wx_post(client: TestClient, body: str | bytes, **params: str):
    return client.post("/wechat", params=wx_query(openid=OPENID) | params, content=body)


def wx_encrypted(xml: str, timestamp: str, nonce: str) -> tuple[str, str]:
    """(safe-mode body, msg_signature) of `xml` encrypted as WeChat does it."""
    envelope = xmltodict.parse(WeChatCrypto(WX_TOKEN, WX_AES_KEY, WX_APPID).encrypt_message(xml, nonce, timestamp))
    cipher = envelope["xml"]["Encrypt"]
    body = f"<xml><ToUserName>{GH}</ToUserName><Encrypt><![CDATA[{cipher}]]></Encrypt></xml>"
    return body, wx_sign(WX_TOKEN, timestamp, nonce, cipher)


def echo_router(monkeypatch) -> list[str]:
    """Replace the router behind /wechat by one that records each text and answers "echo:<text>"."""
    routed: list[str] = []

    def route(router, incoming: IncomingMessage) -> Reply:
        routed.append(incoming.text)
        return Reply(text=f"echo:{incoming.text}", intent="answer")

    monkeypatch.setattr(inbound, "_route", route)
    return routed


def is_ack(response) -> bool:
    return response.status_code == 200 and response.text == "success"


def wx_reply_content(response) -> str:
    assert response.status_code == 200, response.text
    return xmltodict.parse(response.text)["xml"]["Content"]


def tg_post(client: TestClient, body: dict | bytes, headers: dict | None = None):
    content = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return client.post("/telegram", content=content, headers=TG_HEADERS if headers is None else headers)


def tg_text_update(update_id: int, text: str, chat_id: int = 777001) -> dict:
    user = {"id": chat_id, "is_bot": False, "first_name": "李"}
    chat = {"id": chat_id, "first_name": "李", "type": "private"}
    message = {"message_id": update_id, "from": user, "chat": chat, "date": 1700000000, "text": text}
    return {"update_id": update_id, "message": message}


def outbox_rows() -> list[OutboxMessage]:
    with session_scope() as db_session:
        return list(db_session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def _asgi_post(app: FastAPI, path: str, *, total: int, headers: dict, declared: bool, query: str) -> tuple:
    chunk = b"x" * (64 * 1024)
    pulled = 0
    status: list[int] = []

    async def receive() -> dict:
        nonlocal pulled
        if pulled >= total:
            return {"type": "http.disconnect"}
        size = min(len(chunk), total - pulled)
        pulled += size
        return {"type": "http.request", "body": chunk[:size], "more_body": pulled < total}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    raw_headers = [(b"host", b"testserver")] + [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    if declared:
        raw_headers.append((b"content-length", str(total).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": raw_headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    await app(scope, receive, send)
    return status[0], pulled


def upload(app: FastAPI, path: str, *, total: int, headers: dict | None = None, declared: bool = True, query=""):
    """POST `total` bytes of junk straight into the ASGI app, in 64 KiB chunks; (status, bytes the app pulled)."""
    return asyncio.run(_asgi_post(app, path, total=total, headers=headers or {}, declared=declared, query=query))


# --- fuzzing: schemathesis over the OpenAPI spec ---------------------------------------------------------------

# Examples per operation and generation mode (operations without parameters yield a single case).
SCHEMATHESIS_EXAMPLES = 100


def _string_detail(response) -> bool:
    try:
        return isinstance(json.loads(response.content).get("detail"), str)
    except (ValueError, AttributeError):
        return False


def response_conformance(ctx, response, case):
    """response_schema_conformance, except for a 422 whose detail is a sentence: our routes raise
    HTTPException(422, "reason") where FastAPI documents only its validation-error list (see the report)."""
    if response.status_code == 422 and _string_detail(response):
        return None
    return response_schema_conformance(ctx, response, case)


CHECKS = [not_a_server_error, response_conformance, content_type_conformance, response_headers_conformance]


@SQLITE_ONLY
def test_schemathesis_every_operation_without_server_errors(env, errors):
    chat_auth = make_integration("fuzz").headers["Authorization"]  # /api/chat takes an integration key
    app = create_app()
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    # The JSON APIs; the console's HTML forms (session and CSRF token) are out of scope here, see the CSRF test.
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [operation for operation in operations if not operation.path.startswith("/console")]
    assert len(operations) >= 18
    failures: dict[str, str] = {}
    logged_before = [0]  # ERROR records before the current operation's run
    try:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                label = f"{operation.label} [{mode.value}]"
                strategy = operation.as_strategy(
                    generation_mode=mode,
                    headers={"authorization": chat_auth if operation.path == "/api/chat" else ADMIN["Authorization"]},
                )

                @settings(FUZZ, max_examples=SCHEMATHESIS_EXAMPLES)
                @given(case=strategy)
                def run(case) -> None:
                    CASES["schemathesis"] += 1
                    response = case.call()
                    case.validate_response(response, checks=CHECKS)
                    no_new_errors(errors, logged_before[0])

                logged_before[0] = len(errors.records)
                try:
                    run()
                except Unsatisfiable:
                    pass  # no negative data exists for an operation without parameters
                except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
                    failures[label] = f"{type(exc).__name__}: {exc}"
    finally:
        from schemathesis.python import asgi as schemathesis_asgi

        schemathesis_asgi.shutdown_lifespans()  # schemathesis keeps the app's lifespan running otherwise
    assert not failures, "\n\n".join(f"{label}\n{text[:3000]}" for label, text in failures.items())


# --- fuzzing: POST /wechat -------------------------------------------------------------------------------------

PHRASES = [
    "你好",
    "菜单",
    "转人工",
    "结束",
    "1",
    "2",
    "3",
    "9",
    "0",
    "查发票",
    "绑定",
    "解绑",
    "返回",
    "重来",
    "退出",
    "继续",
    "开票提示服务器繁忙",
    "发票号码25112000000098765432查一下",
    "发票代码011001900111 号码12345678",
    "税号91110108MA01ABCD5T",
    "'; DROP TABLE faq_entry; --",
    "1 OR 1=1",
    "%s%n%x{0}",
    "{{7*7}}${7*7}",
    "<script>alert(1)</script>",
    "]]><Evil/>",
    "\u202e\u200b\ufeff",
    "😀" * 50,
    "票" * 3000,
]
texts = st.one_of(
    st.sampled_from(PHRASES),
    st.text(max_size=200),
    st.lists(st.one_of(st.sampled_from(PHRASES), st.text(max_size=12)), max_size=5).map("".join),
)
WX_TYPES = ["text", "image", "voice", "video", "shortvideo", "location", "link", "event", "file", "miniprogrampage"]
WX_EVENTS = ["subscribe", "unsubscribe", "CLICK", "click", "VIEW", "SCAN", "LOCATION", "TEMPLATESENDJOBFINISH"]
numbers = st.one_of(st.integers(-(2**70), 2**70).map(str), st.floats().map(str), st.text(max_size=12))


def cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 cannot carry (controls, surrogates, U+FFFE/U+FFFF)."""
    return "".join(
        c for c in text if c in "\t\n\r" or "\x20" <= c <= "\ud7ff" or "\ue000" <= c <= "\ufffd" or c >= "\U00010000"
    )


def mostly(sane: st.SearchStrategy, wild: st.SearchStrategy) -> st.SearchStrategy:
    """Seven draws in eight from `sane`, so most fuzzed pushes get past parsing and reach the router."""
    return st.integers(0, 7).flatmap(lambda n: wild if n == 0 else sane)


@st.composite
def wechat_pushes(draw) -> tuple[str, str | None]:
    """(XML without MsgId, a MsgId to add or None for a fresh one): valid XML, random field values and MsgTypes."""
    fields = draw(
        st.fixed_dictionaries(
            {
                "ToUserName": mostly(st.just(GH), st.text(max_size=30)),
                "FromUserName": mostly(st.sampled_from([OPENID, "oOther-2", "oOther-3"]), st.text(max_size=40)),
                "CreateTime": mostly(st.just(str(int(time.time()))), numbers),
                "MsgType": mostly(st.sampled_from(["text", "text", "text", *WX_TYPES]), st.text(max_size=10)),
                "Content": texts,
            },
            optional={
                "Event": mostly(st.sampled_from(WX_EVENTS), st.text(max_size=10)),
                "EventKey": st.one_of(st.sampled_from(["FAQ_MENU", "INVOICE_LOOKUP", "HANDOFF", "qrscene_1"]), texts),
                "Recognition": texts,
                "MediaId": st.text(max_size=20),
                "Location_X": numbers,
                "Scale": numbers,
                "Url": st.text(max_size=30),
                "Ticket": st.text(max_size=10),
            },
        )
    )
    if draw(mostly(st.just(True), st.just(False))):
        fields = {name: xml_safe(value) for name, value in fields.items()}
    wrap = draw(st.sampled_from([escape, cdata]))
    body = "".join(f"<{name}>{wrap(value)}</{name}>" for name, value in fields.items())
    msg_id = draw(mostly(st.none(), st.one_of(numbers, st.sampled_from(["1", "2"]))))
    return f"<xml>{body}</xml>", msg_id


XML_TAGS = ["xml", "ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Event", "Encrypt", "x"]
XML_BITS = ["&amp;", "&lt;", "&#0;", "&#x1F600;", "&undefined;", "<!-- c -->", "<?pi x?>", "]]>", "<", "&", "text"]
xml_leaves = st.one_of(st.text(max_size=20).map(escape), st.text(max_size=20).map(cdata), st.sampled_from(XML_BITS))


def _element(parts: tuple[str, list[str], str]) -> str:
    tag, children, attribute = parts
    return f"<{tag}{attribute}>{''.join(children)}</{tag}>"


xml_nodes = st.recursive(
    xml_leaves,
    lambda children: st.tuples(
        st.sampled_from(XML_TAGS),
        st.lists(children, max_size=4),
        st.sampled_from(["", ' a="1"', " a='&x;'", ' xmlns="urn:x"']),
    ).map(_element),
    max_leaves=15,
)
XML_PROLOGS = [
    "",
    '<?xml version="1.0"?>',
    '<?xml version="1.0" encoding="GBK"?>',
    '<!DOCTYPE xml [<!ENTITY e "v">]>',
    "\ufeff",
    "<!DOCTYPE xml>",
]
xmlish = st.tuples(st.sampled_from(XML_PROLOGS), xml_nodes, st.sampled_from(["", "<xml/>", "trailing"])).map("".join)


@st.composite
def wechat_queries(draw) -> dict[str, str]:
    """Query strings, signed over whatever timestamp and nonce they carry (or not signed at all)."""
    timestamp = draw(
        st.one_of(
            st.integers(-400, 400).map(lambda skew: str(int(time.time()) + skew)),
            st.integers(-(10**4000), 10**4000).map(str),
            st.text(max_size=20),
        )
    )
    nonce = draw(st.text(max_size=20))
    query = {"signature": wx_sign(WX_TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    extra = draw(
        st.dictionaries(
            st.sampled_from(["signature", "openid", "encrypt_type", "msg_signature", "echostr"]), st.text(max_size=50)
        )
    )
    return query | extra


@SQLITE_ONLY
def test_fuzz_wechat_push_never_fails(client, errors):
    """Correctly signed pushes whose bodies are bytes, XML-ish text or valid XML with random fields (plain mode),
    random or really encrypted ciphertexts (safe mode), and random query strings."""
    msg_ids = itertools.count(10**15)
    start = len(errors.records)
    crypto = WeChatCrypto(WX_TOKEN, WX_AES_KEY, WX_APPID)

    outcomes: collections.Counter[str] = collections.Counter()

    def check(response, *statuses: int) -> None:
        CASES["wechat"] += 1
        assert response.status_code < 500, response.text
        assert response.status_code in statuses, (response.status_code, response.text)
        if response.request.method == "POST" and response.status_code == 200 and response.text != "success":
            assert xmltodict.parse(response.text)["xml"]  # our passive reply is well-formed XML
            outcomes["reply"] += 1
        else:
            outcomes[str(response.status_code)] += 1
        no_new_errors(errors, start)

    @settings(FUZZ, max_examples=300)
    @given(body=st.binary(max_size=2048))
    def plain_bytes(body: bytes) -> None:
        check(wx_post(client, body), 200)

    @settings(FUZZ, max_examples=400)
    @given(body=xmlish)
    def plain_xmlish(body: str) -> None:
        check(wx_post(client, body.encode("utf-8", "surrogatepass")), 200)

    @settings(FUZZ, max_examples=700)
    @given(push=wechat_pushes())
    def plain_valid_xml(push: tuple[str, str | None]) -> None:
        xml, msg_id = push
        msg_id = escape(msg_id) if msg_id is not None else next(msg_ids)  # fresh: not answered from the retry cache
        xml = xml.replace("</xml>", f"<MsgId>{msg_id}</MsgId></xml>")
        check(wx_post(client, xml.encode("utf-8", "surrogatepass")), 200)

    @settings(FUZZ, max_examples=200)
    @given(cipher=st.one_of(st.binary(max_size=512).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=200)))
    def encrypted_random(cipher: str) -> None:
        timestamp, nonce = str(int(time.time())), fresh_nonce()
        body = f"<xml><ToUserName>{GH}</ToUserName><Encrypt>{escape(cipher)}</Encrypt></xml>"
        params = wx_query(timestamp=timestamp, nonce=nonce, encrypt_type="aes")
        params["msg_signature"] = wx_sign(WX_TOKEN, timestamp, nonce, cipher.strip())
        check(client.post("/wechat", params=params, content=body.encode("utf-8", "surrogatepass")), 200, 403)

    @settings(FUZZ, max_examples=200)
    @given(push=wechat_pushes())
    def encrypted_valid_xml(push: tuple[str, str | None]) -> None:
        xml = push[0].replace("</xml>", f"<MsgId>{next(msg_ids)}</MsgId></xml>")
        timestamp, nonce = str(int(time.time())), fresh_nonce()
        body, msg_signature = wx_encrypted(xml, timestamp=timestamp, nonce=nonce)
        params = wx_query(timestamp=timestamp, nonce=nonce, encrypt_type="aes", msg_signature=msg_signature)
        response = client.post("/wechat", params=params, content=body)
        check(response, 200)
        if response.text != "success":
            envelope = xmltodict.parse(response.text)["xml"]
            crypto.decrypt_message(response.text, envelope["MsgSignature"], timestamp, nonce)

    @settings(FUZZ, max_examples=300)
    @given(query=wechat_queries(), body=st.one_of(st.just(wx_text("你好")), st.binary(max_size=64)))
    def random_queries(query: dict[str, str], body: str | bytes) -> None:
        check(client.post("/wechat", params=query, content=body), 200, 403)
        check(client.get("/wechat", params=query), 200, 403)

    for fuzz in (plain_bytes, plain_xmlish, plain_valid_xml, encrypted_random, encrypted_valid_xml, random_queries):
        fuzz()
    print(f"\nwechat fuzz outcomes: {dict(outcomes)}")
    assert outcomes["reply"] >= 200, "the fuzzer reaches the router and the media replies"


# --- fuzzing: POST /telegram -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
tg_ints = st.one_of(st.integers(-(2**31), 2**31), st.integers(-(2**70), 2**70), st.sampled_from([0, 777001, -100123]))
tg_users = st.fixed_dictionaries(
    {"id": tg_ints, "is_bot": st.booleans(), "first_name": st.text(max_size=20)},
    optional={"username": st.text(max_size=20), "language_code": st.sampled_from(["zh-hans", "en", ""])},
)
tg_chats = st.fixed_dictionaries(
    {
        "id": tg_ints,
        "type": st.one_of(st.sampled_from(["private", "group", "supergroup", "channel"]), st.text(max_size=8)),
    },
    optional={"first_name": st.text(max_size=10), "title": st.text(max_size=10)},
)
tg_entities = st.fixed_dictionaries(
    {"type": st.sampled_from(["bot_command", "mention", "url", "bold", "x"]), "offset": tg_ints, "length": tg_ints}
)
tg_files = st.fixed_dictionaries({"file_id": st.text(max_size=10), "file_unique_id": st.text(max_size=10)})
tg_messages = st.fixed_dictionaries(
    {
        "message_id": tg_ints,
        "date": st.one_of(st.just(1700000000), tg_ints, json_values),
        "chat": st.one_of(st.sampled_from([{"id": 777001, "type": "private", "first_name": "李"}]), tg_chats),
    },
    optional={
        "from": tg_users,
        "text": st.one_of(texts, st.sampled_from(["/start", "/help", "/menu@invoice_helper_bot", "/start x"])),
        "entities": st.lists(tg_entities, max_size=2),
        "photo": st.lists(tg_files.map(lambda f: f | {"width": 1, "height": 1}), max_size=2),
        "document": tg_files,
        "sticker": tg_files,
        "voice": tg_files.map(lambda f: f | {"duration": 1}),
        "caption": texts,
        "edit_date": json_values,
        "x": json_values,
    },
)
tg_callbacks = st.fixed_dictionaries(
    {"id": st.text(max_size=10), "from": tg_users, "chat_instance": st.text(max_size=10)},
    optional={
        "message": tg_messages,
        "data": st.one_of(st.sampled_from(["opt:1", "opt:2", "opt:3", "opt:99", "opt:0", "opt:-1", "opt:"]), texts),
        "inline_message_id": st.text(max_size=10),
    },
)
wild_updates = st.fixed_dictionaries(
    {"update_id": tg_ints},
    optional={
        "message": tg_messages,
        "edited_message": tg_messages,
        "callback_query": tg_callbacks,
        "channel_post": tg_messages,
        "my_chat_member": json_values,
        "poll": json_values,
    },
)
COMMANDS = ["/start", "/help", "/menu@invoice_helper_bot", "/start deep-link", "/unknown"]
MEDIA = [
    {"photo": [{"file_id": "p", "file_unique_id": "p1", "width": 1, "height": 1}]},
    {"document": {"file_id": "d", "file_unique_id": "d1"}},
    {"voice": {"file_id": "v", "file_unique_id": "v1", "duration": 1}},
]


@st.composite
def private_updates(draw) -> dict:
    """Well-formed updates from private chats (text, commands, media, button presses) with random content."""
    chat_id = draw(st.one_of(st.sampled_from([777001, 777002, 2**40]), st.integers(1, 2**52)))
    user = {"id": chat_id, "is_bot": False, "first_name": draw(st.text(max_size=10))}
    chat = {"id": chat_id, "type": "private", "first_name": "李"}
    message = {"message_id": draw(st.integers(1, 2**31 - 1)), "date": 1700000000, "chat": chat, "from": user}
    kind = draw(st.sampled_from(["text", "text", "text", "command", "media", "button"]))
    if kind == "text":
        message["text"] = draw(texts)
    elif kind == "command":
        command = draw(st.sampled_from(COMMANDS))
        message |= {"text": command, "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}]}
    elif kind == "media":
        message |= draw(st.sampled_from(MEDIA)) | draw(st.fixed_dictionaries({}, optional={"caption": texts}))
    else:
        data = draw(st.one_of(st.sampled_from(["opt:1", "opt:2", "opt:3", "opt:99", "opt:0", "opt:-1"]), texts))
        bot_message = message | {"from": {"id": 123456, "is_bot": True, "first_name": "发票助手"}, "text": "菜单"}
        query = {"id": draw(st.text(max_size=10)), "from": user, "chat_instance": "42", "message": bot_message}
        return {"update_id": 0, "callback_query": query | {"data": data}}
    return {"update_id": 0, "message": message}


tg_updates = mostly(private_updates(), wild_updates)


@SQLITE_ONLY
def test_fuzz_telegram_webhook_never_fails(tg_client, errors):
    """With the right secret: arbitrary bytes and JSON, and random Update-shaped objects, through the real PTB
    application (against the fake Bot API), the router and the outbox."""
    update_ids = itertools.count(10**9)
    start = len(errors.records)

    def check(response) -> None:
        CASES["telegram"] += 1
        assert response.status_code == 200, (response.status_code, response.text)
        no_new_errors(errors, start)

    @settings(FUZZ, max_examples=400)
    @given(body=st.one_of(json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=512)))
    def arbitrary_bodies(body: bytes) -> None:
        check(tg_post(tg_client, body))

    @settings(FUZZ, max_examples=1100)
    @given(update=tg_updates, fresh_id=mostly(st.just(True), st.just(False)))
    def updates(update: dict, fresh_id: bool) -> None:
        if fresh_id or not update["update_id"]:  # a new id, so the update is not dropped as a redelivery
            update["update_id"] = next(update_ids)
        check(tg_post(tg_client, json.dumps(update, ensure_ascii=False).encode("utf-8", "surrogatepass")))

    arbitrary_bodies()
    updates()
    answered = len(outbox_rows())
    print(f"\ntelegram fuzz: {answered} replies queued")
    assert answered >= 300, "the fuzzer reaches the handlers, the router and the outbox"


# --- fuzzing: identifier parsers -------------------------------------------------------------------------------

ID_ALPHABET = "0123456789０１２３４５６７８９OoIlZSVABCDEFGHJKLMNPQRTUWXYabc -—‐\t\n:：年月日号码代码发票税\u200b\u3000"
ID_FRAGMENTS = [
    "发票代码",
    "发票号码",
    "号码:",
    "代码：",
    "税号",
    "2025-10-01",
    "2025年10月1日",
    "10:30",
    "25112000000098765432",
    "2511 2000 0000 9876 5432",
    "011001900111",
    "1100194130",
    "12345678",
    "91110108MA01ABCD5T",
    "９１１１０１０８ＭＡ０１ＡＢＣＤ５Ｔ",
    "110108123456789",
    "11010819900101123456",
    "2O25112OOOOOOO98765432",
]
id_texts = st.one_of(
    st.lists(st.one_of(st.sampled_from(ID_FRAGMENTS), st.text(alphabet=ID_ALPHABET, max_size=25)), max_size=8).map(
        "".join
    ),
    st.text(max_size=300),
)


def test_fuzz_identifier_parsers_never_raise():
    """scan, find_taxpayer_id, check_taxpayer_id and the decoders on arbitrary and identifier-like text: only the
    documented ValueError of the decoders, and results that agree with each other."""

    @settings(FUZZ, max_examples=5000)
    @given(text=id_texts)
    def parsers(text: str) -> None:
        CASES["identifiers"] += 1
        found = identifiers.scan(text)
        if found is not None:
            assert found.ref is not None or found.problem
            if found.ref is not None:
                assert all(value.isascii() and value.isdigit() for value in found.ref.as_dict().values())
                assert found.ref.describe() and found.ref.kind
        tax_id = identifiers.find_taxpayer_id(text)
        if tax_id is not None:
            assert identifiers.check_taxpayer_id(tax_id).ok, tax_id
        check = identifiers.check_taxpayer_id(text)
        assert check.value == identifiers.normalize_taxpayer_id(text)
        assert check.ok or check.problem
        for decode in (identifiers.decode_digital_number, identifiers.decode_invoice_code):
            with contextlib.suppress(ValueError):
                decode(text)
        with contextlib.suppress(ValueError):
            identifiers.uscc_check_char(text[:17])

    parsers()


# --- forged signatures -----------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_forged_wechat_signatures_are_refused(client, monkeypatch):
    routed = echo_router(monkeypatch)
    forged = [
        wx_query(token="not-the-token"),
        wx_query() | {"signature": "0" * 40},
        wx_query() | {"nonce": "another-nonce"},  # a real signature, replayed with another nonce
        wx_query() | {"signature": ""},
        {"timestamp": str(int(time.time())), "nonce": "1"},
        {},
    ]
    for params in forged:
        assert client.post("/wechat", params=params, content=wx_text("你好")).status_code == 403, params
        verify = client.get("/wechat", params=params | {"echostr": "echo-me"})
        assert verify.status_code == 403 and "echo-me" not in verify.text, params
    timestamp, nonce = str(int(time.time())), "9"
    body, _ = wx_encrypted(wx_text("你好", msg_id=5), timestamp=timestamp, nonce=nonce)
    aes = wx_query(timestamp=timestamp, nonce=nonce, encrypt_type="aes")
    for msg_signature in ("f" * 40, "", wx_sign(WX_TOKEN, timestamp, nonce, "other-ciphertext")):
        response = client.post("/wechat", params=aes | {"msg_signature": msg_signature}, content=body)
        assert response.status_code == 403, msg_signature
    assert routed == []


@SQLITE_ONLY
def test_forged_telegram_secret_is_refused(tg_client):
    update = tg_text_update(1, "你好")
    for headers in (
        {},
        {"X-Telegram-Bot-Api-Secret-Token": ""},
        {"X-Telegram-Bot-Api-Secret-Token": "wrong"},
        {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET.upper()},
        {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET[:-1]},
        {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET + " "},
        {"Authorization": f"Bearer {TG_SECRET}"},
    ):
        assert tg_post(tg_client, update, headers=headers | {"Content-Type": "application/json"}).status_code == 403
    assert outbox_rows() == []


# --- replayed requests -----------------------------------------------------------------------------------------


@SQLITE_ONLY
def test_wechat_push_replayed_outside_the_window_is_refused(client, monkeypatch):
    routed = echo_router(monkeypatch)
    now = int(time.time())
    for timestamp in (now - 301, now - 3600, now - 10**6, now + 600, 0, -1):
        params = wx_query(timestamp=str(timestamp), openid=OPENID)  # correctly signed, but captured long ago
        response = client.post("/wechat", params=params, content=wx_text("你好", msg_id=timestamp))
        assert response.status_code == 403 and "stale" in response.json()["detail"], timestamp
    assert routed == []


@SQLITE_ONLY
def test_wechat_push_replayed_inside_the_window_is_handled_once(client, monkeypatch):
    routed = []
    real_route = inbound._route

    def counting_route(router, incoming):
        routed.append(incoming.text)
        return real_route(router, incoming)

    monkeypatch.setattr(inbound, "_route", counting_route)
    push = wx_text("开票提示服务器繁忙", msg_id=424242)
    replies = [
        wx_reply_content(wx_post(client, push, **wx_query(nonce=nonce, timestamp=str(int(time.time()) - skew))))
        for nonce, skew in (("a1", 0), ("b2", 100), ("c3", 250))
    ]
    assert routed == ["开票提示服务器繁忙"]
    assert len(set(replies)) == 1 and replies[0]


@SQLITE_ONLY
def test_telegram_update_replayed_is_handled_once(tg_client):
    update = tg_text_update(5151, "开票提示服务器繁忙")
    assert [tg_post(tg_client, update).status_code for _ in range(3)] == [200, 200, 200]
    assert len(outbox_rows()) == 1


# --- oversized bodies and 20 MB uploads ------------------------------------------------------------------------


@SQLITE_ONLY
def test_oversized_bodies_are_refused_before_they_are_read(env):
    """/wechat (64 KiB) and /telegram (1 MiB) answer 413 without reading a declared-too-large body, and stop reading
    a streamed one (no Content-Length) as soon as it passes the cap."""
    clear_process_caches()
    app = create_app()
    wechat_query = "&".join(f"{k}={quote(v)}" for k, v in wx_query().items())
    status, pulled = upload(app, "/wechat", total=64 * 1024 + 1, query=wechat_query)
    assert (status, pulled) == (413, 0)
    status, pulled = upload(app, "/wechat", total=20 * MB, query=wechat_query, declared=False)
    assert status == 413 and pulled <= 2 * 64 * 1024
    status, pulled = upload(app, "/telegram", total=MB + 1, headers={"X-Telegram-Bot-Api-Secret-Token": "any"})
    assert status == 403 and pulled == 0, "the secret is checked before the body"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TELEGRAM_SECRET_TOKEN", TG_SECRET)
        clear_process_caches()
        secret = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}
        assert upload(app, "/telegram", total=MB + 1, headers=secret) == (413, 0)
        status, pulled = upload(app, "/telegram", total=20 * MB, headers=secret, declared=False)
        assert status == 413 and pulled <= MB + 64 * 1024


@SQLITE_ONLY
def test_oversized_json_fields_are_refused(client):
    """The JSON APIs have no byte cap of their own (see the report); their fields do."""
    chat = make_integration().headers
    assert client.post("/api/chat", json={"user_id": "u", "text": "票" * 20001}, headers=chat).status_code == 422
    too_long = {"user_id": "u" * (USER_ID_MAX_CHARS + 1), "text": "x"}  # "<slug>:<user_id>" must fit the columns
    assert client.post("/api/chat", json=too_long, headers=chat).status_code == 422
    too_many = {"invoices": [{"number": "1"}] * 5001}
    assert client.post("/api/invoices", json=too_many, headers=ADMIN).status_code == 422
    deep = b"[" * 100_000 + b"]" * 100_000  # nesting deeper than the JSON parser's recursion limit
    for path in ("/api/chat", "/api/invoices", "/api/admin/faq/try"):
        response = client.post(path, content=deep, headers=ADMIN | {"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, path


@SQLITE_ONLY
def test_20_mb_uploads_are_refused(env):
    """20 MB to the FAQ import, the invoice feed and /wechat: 413 (or 401/403 first), and nothing is read: the
    app-wide body cap (MAX_REQUEST_BYTES) refuses a declared size before the route runs."""
    clear_process_caches()
    app = create_app()
    yaml = {"Content-Type": "application/yaml"}
    started = time.monotonic()
    assert upload(app, "/api/admin/faq/import", total=20 * MB, headers=ADMIN | yaml) == (413, 0)
    assert upload(app, "/api/admin/faq/import", total=20 * MB, headers=yaml)[0] in (401, 413)
    as_json = {"Content-Type": "application/json"}
    assert upload(app, "/api/invoices", total=20 * MB, headers=ADMIN | as_json) == (413, 0)
    assert upload(app, "/api/invoices", total=20 * MB, headers=as_json)[0] in (401, 413)
    streamed, pulled = upload(app, "/api/invoices", total=20 * MB, headers=ADMIN | as_json, declared=False)
    assert streamed == 413 and pulled <= 4 * MB + 64 * 1024, "an undeclared stream stops at the cap"
    wechat_query = "&".join(f"{k}={quote(v)}" for k, v in wx_query().items())
    assert upload(app, "/wechat", total=20 * MB, query=wechat_query) == (413, 0)
    assert upload(app, "/wechat", total=20 * MB)[1] == 0, "unsigned: refused before the body"
    assert time.monotonic() - started < 20


@SQLITE_ONLY
def test_20_mb_of_valid_json_is_refused(client):
    """A well-formed 20 MB batch (20,000 invoices) is refused by the body cap, without writing anything."""
    invoice = {"number": "25112000000098765432", "status": "issued", "seller_tax_id": "91110108MA01ABCD5T"}
    filler = "x" * 1000
    batch = {"invoices": [invoice | {"failure_reason": filler}] * 20_000}
    body = json.dumps(batch).encode()
    assert len(body) > 20 * MB
    started = time.monotonic()
    response = client.post("/api/invoices", content=body, headers=ADMIN | {"Content-Type": "application/json"})
    assert response.status_code == 413 and time.monotonic() - started < 15
    with session_scope() as db_session:
        assert db_session.scalar(select(func.count()).select_from(Invoice)) == 0


# --- XXE and billion laughs ------------------------------------------------------------------------------------


class _DtdServer(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        body = b'<!ENTITY leak "fetched-from-the-network">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def dtd_server() -> Iterator[str]:
    """An HTTP server an external DTD or entity would be fetched from; its `hits` must stay empty."""
    _DtdServer.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DtdServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _push_with_doctype(doctype: str, content: str, msg_id: int) -> str:
    return (
        f'<?xml version="1.0"?>{doctype}<xml><ToUserName>{GH}</ToUserName><FromUserName>{OPENID}</FromUserName>'
        f"<CreateTime>1</CreateTime><MsgType>text</MsgType><Content>{content}</Content><MsgId>{msg_id}</MsgId></xml>"
    )


@SQLITE_ONLY
def test_xxe_does_not_read_files_or_fetch_urls(client, dtd_server, monkeypatch):
    routed = echo_router(monkeypatch)
    attacks = [
        ('<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>', "&xxe;"),
        ('<!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>', "a&xxe;b"),
        (f'<!DOCTYPE xml [<!ENTITY xxe SYSTEM "{dtd_server}/entity">]>', "&xxe;"),
        (f'<!DOCTYPE xml SYSTEM "{dtd_server}/external.dtd">', "&leak;"),
        (f'<!DOCTYPE xml [<!ENTITY % p SYSTEM "{dtd_server}/parameter.dtd"> %p;]>', "&leak;"),
        ('<!DOCTYPE xml [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>', "x"),
    ]
    crypto = WeChatCrypto(WX_TOKEN, WX_AES_KEY, WX_APPID)
    timestamp = str(int(time.time()))
    answers = []
    for number, (doctype, content) in enumerate(attacks):
        nonce = fresh_nonce()
        push = _push_with_doctype(doctype, content, 900 + number)
        plain = wx_post(client, push)
        assert plain.status_code == 200, (doctype, plain.text)
        answers.append(plain.text)
        body, msg_signature = wx_encrypted(push.replace(str(900 + number), str(950 + number)), timestamp, nonce)
        params = wx_query(timestamp=timestamp, nonce=nonce, encrypt_type="aes", msg_signature=msg_signature)
        encrypted = client.post("/wechat", params=params, content=body)
        assert encrypted.status_code == 200, doctype
        if encrypted.text != "success":
            envelope = xmltodict.parse(encrypted.text)["xml"]
            answers.append(crypto.decrypt_message(encrypted.text, envelope["MsgSignature"], timestamp, nonce))
    assert _DtdServer.hits == [], "no external DTD or entity is fetched"
    leaked = [text for text in routed + answers if "root:" in text or "fetched-from-the-network" in text]
    assert leaked == [], "no file or URL content reaches the router or the reply"
    # Most are refused outright ("entities are disabled"); an undefined reference under an external DTD is skipped.
    assert set(routed) <= {""}


LAUGHS = "".join(
    f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' if i else '<!ENTITY lol0 "lol">' for i in range(10)
)


@SQLITE_ONLY
def test_billion_laughs_and_quadratic_blowup_are_answered_at_once(client, monkeypatch):
    routed = echo_router(monkeypatch)
    big = "A" * 30_000  # one 30 KB entity referenced 1,000 times: 30 MB once expanded
    bombs = [
        _push_with_doctype(f"<!DOCTYPE xml [{LAUGHS}]>", "&lol9;", 1),
        _push_with_doctype(f'<!DOCTYPE xml [<!ENTITY a "{big}">]>', "&a;" * 1000, 2),
    ]
    for bomb in bombs:
        assert len(bomb.encode()) < 64 * 1024, "inside the body cap"
        started = time.monotonic()
        response = wx_post(client, bomb)
        assert is_ack(response) and len(response.content) < 100
        assert time.monotonic() - started < 2.0
    yaml_bomb = "".join(
        f"- &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" if i else "- &a0 [lol, lol]\n" for i in range(10)
    )
    started = time.monotonic()
    response = client.post(
        "/api/admin/faq/import", content=yaml_bomb, headers=ADMIN | {"Content-Type": "application/yaml"}
    )
    assert response.status_code == 422 and time.monotonic() - started < 5.0
    assert routed == []


# --- SQL-looking text ------------------------------------------------------------------------------------------

SQL_TEXTS = [
    "'; DROP TABLE faq_entry; --",
    "1 OR 1=1",
    "' OR '1'='1",
    '" OR ""="',
    "1; DELETE FROM merchant; --",
    "admin'--",
    "1' UNION SELECT id, answer FROM faq_entry --",
    "'); DROP TABLE conversation_turn; --",
    "%' AND 1=0 UNION SELECT version() --",
    "发票'; TRUNCATE invoice; --",
]


def test_sql_looking_text_is_only_text(client):
    """On each database: SQL in messages, FAQ questions, path segments and merchant fields is answered or stored as
    text; every table and row is still there afterwards."""
    tables = set(inspect(get_engine()).get_table_names())
    assert {"faq_entry", "conversation_turn", "merchant", "invoice"} <= tables
    with session_scope() as db_session:
        faq_rows = db_session.scalar(select(func.count()).select_from(FaqEntry))
    assert faq_rows > 0
    caller = make_integration()
    for number, text in enumerate(SQL_TEXTS):
        chat = client.post("/api/chat", json={"user_id": text, "text": text}, headers=caller.headers)
        assert chat.status_code == 200 and chat.json()["text"], text
        chat = client.post("/api/chat", json=caller.signed(text) | {"text": text})
        assert chat.status_code == 200 and chat.json()["text"], text
        tried = client.post("/api/admin/faq/try", json={"text": text}, headers=ADMIN)
        assert tried.status_code == 200 and tried.json()["outcome"] in ("answer", "clarify", "not_sure"), text
        assert client.get(f"/api/admin/faq/{quote(text, safe='')}", headers=ADMIN).status_code == 404, text
        assert wx_post(client, wx_text(text, msg_id=7000 + number)).status_code == 200
    merchant = {"name": SQL_TEXTS[0], "tax_ids": ["91110108MA01ABCD5T"], "contact": SQL_TEXTS[1]}
    assert (
        client.post("/api/admin/merchants", json=merchant, headers={"Authorization": SQL_TEXTS[1]}).status_code == 401
    )
    created = client.post("/api/admin/merchants", json=merchant, headers=ADMIN)
    assert created.status_code == 201, created.text
    stored = client.get(f"/api/admin/merchants/{created.json()['id']}", headers=ADMIN).json()
    assert (stored["name"], stored["contact"]) == (SQL_TEXTS[0], SQL_TEXTS[1])
    assert set(inspect(get_engine()).get_table_names()) == tables
    with session_scope() as db_session:
        assert db_session.scalar(select(func.count()).select_from(FaqEntry)) == faq_rows
    assert len(client.get("/api/admin/faq", headers=ADMIN).json()) == faq_rows


# --- CSRF on console forms -------------------------------------------------------------------------------------


def _console_app() -> FastAPI:
    """The real application, console included."""
    return create_app()


def _form_token(page) -> str:
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


CONSOLE_PASSWORD = "correct horse battery"


@pytest.fixture
def console(env, monkeypatch) -> Iterator[tuple[TestClient, int]]:
    """A browser on the console app, logged in as a new admin (cheap argon2 parameters), and the admin's id."""
    from argon2 import PasswordHasher

    from ticketing import staff

    monkeypatch.setattr(staff, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    with TestClient(_console_app(), follow_redirects=False, raise_server_exceptions=True) as browser:
        with session_scope() as db_session:
            admin_id = staff.create(db_session=db_session, username="root", password=CONSOLE_PASSWORD, role="admin").id
        yield browser, admin_id


def _log_in(browser: TestClient) -> str:
    """Log in as the fixture's admin; the session's CSRF token."""
    token = _form_token(browser.get("/console/login"))
    form = {"username": "root", "password": CONSOLE_PASSWORD, "csrf_token": token}
    assert browser.post("/console/login", data=form).status_code == 303
    return _form_token(browser.get("/console/queue"))


@SQLITE_ONLY
def test_console_forms_refuse_missing_wrong_and_cross_site_csrf_tokens(console):
    from ticketing.models import StaffUser

    browser, admin_id = console
    login_form = {"username": "root", "password": CONSOLE_PASSWORD}
    token = _form_token(browser.get("/console/login"))
    assert browser.post("/console/login", data=login_form).status_code == 403
    assert browser.post("/console/login", data=login_form | {"csrf_token": "x" * 43}).status_code == 403
    cross = {"Origin": "https://evil.example"}
    assert browser.post("/console/login", data=login_form | {"csrf_token": token}, headers=cross).status_code == 403
    session_token = _log_in(browser)

    new_user = {"username": "mallory", "password": CONSOLE_PASSWORD, "role": "admin"}
    forms = [("/console/presence", {"online": "1"}), ("/console/admin/users", new_user), ("/console/logout", {})]
    for path, form in forms:
        assert browser.post(path, data=form).status_code == 403, path
        assert browser.post(path, data=form | {"csrf_token": "forged"}).status_code == 403, path
        assert browser.post(path, data=form | {"csrf_token": token}).status_code == 403, "the login form's token"
        assert browser.post(path, data=form, headers={"X-CSRF-Token": "forged"}).status_code == 403, path
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}):
            refused = browser.post(path, data=form | {"csrf_token": session_token}, headers=headers)
            assert refused.status_code == 403, (path, headers)
    with session_scope() as db_session:
        assert not db_session.get(StaffUser, admin_id).online
        assert db_session.scalar(select(StaffUser).where(StaffUser.username == "mallory")) is None
    assert browser.get("/console/queue").status_code == 200, "still logged in: the forged logout did nothing"
    done = browser.post("/console/presence", data={"online": "1", "csrf_token": session_token})
    assert done.status_code == 303, "the right token from the same site works"


@SQLITE_ONLY
def test_console_urls_with_out_of_range_ids_are_refused_without_5xx(console):
    """Every console route with an integer in its path, with ids no column holds (SQLite's driver overflows on
    them): a 4xx, never a 500."""
    browser, _ = console
    headers = {"X-CSRF-Token": _log_in(browser)}
    checked = 0
    for path, operations in browser.app.openapi()["paths"].items():
        for method, operation in operations.items():
            parameters = [p for p in operation.get("parameters", []) if p["in"] == "path"]
            if not path.startswith("/console") or not any(p["schema"].get("type") == "integer" for p in parameters):
                continue
            for value in (2**63, -(2**63) - 1, 10**30, 0):
                url = path
                for parameter in parameters:
                    given = str(value) if parameter["schema"].get("type") == "integer" else "busy_server"
                    url = url.replace("{" + parameter["name"] + "}", given)
                response = browser.request(method.upper(), url, headers=headers)
                assert 400 <= response.status_code < 500, (method, url, response.status_code)
                checked += 1
    assert checked >= 4 * 20


# --- raw non-UTF-8 bodies on every route ------------------------------------------------------------------------

RAW_CONTENT_TYPES = (
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=fuzzboundary",
    "multipart/form-data",
    "application/xml",
    "application/yaml",
    "application/octet-stream",
    None,
)
RAW_BODIES = (
    b"\xff\xfe",
    b'{"user_id": "m\xff", "text": "\xc3\x28\xa0\xa1"}',
    b"user_id=%ff%fe&text=%c3%28&csrf_token=%ff\xff",
    b'--fuzzboundary\r\nContent-Disposition: form-data; name="text"\r\n\r\n\xff\xfe\r\n'
    b'--fuzzboundary\r\nContent-Disposition: form-data; name="file"; filename="\xff.yaml"\r\n\r\n\xff\xfe\r\n'
    b"--fuzzboundary--\r\n",
)
# Event streams stay open by design (their client reads events, not a whole body): tests/bot/test_web_chat.py and
# tests/console/test_live.py cover them.
EVENT_STREAMS = ("/api/chat/stream", "/chat/stream", "/console/events")
MISSING_ID = "999999"  # fills every path parameter: a valid int and str that names nothing, so no route changes a row


def _flat_routes(routes) -> Iterator[tuple[set[str], str]]:
    """(methods, path) of routes, included routers unfolded (FastAPI ≥ 0.165 keeps them as one entry each)."""
    for route in routes:
        if hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                yield getattr(context.original_route, "methods", None) or set(), context.path
        else:
            yield getattr(route, "methods", None) or set(), getattr(route, "path", "")


def every_route(app: FastAPI) -> list[tuple[str, str]]:
    """(method, url) of every route of the app, path parameters filled with MISSING_ID."""
    found = []
    for methods, path in _flat_routes(app.routes):
        if not methods or not path:
            continue
        url = re.sub(r"\{[^}]+\}", MISSING_ID, path)
        found += [(method, url) for method in sorted(methods - {"HEAD"})]
    return found


def send_raw(client: TestClient, method: str, url: str, body: bytes, content_type: str | None, headers: dict):
    """One request with a raw body (the only place these requests are sent: adapt credentials here)."""
    sent = dict(headers)
    if content_type is not None:
        sent["Content-Type"] = content_type
    return client.request(method, url, content=body, headers=sent)


def raw_bodies_on_every_route(
    client: TestClient, headers: dict, skip: tuple[str, ...] = (), chat_headers: dict | None = None
) -> collections.Counter:
    """Every raw body with every content type on every route: none answered 5xx, none escaped the app (an exception
    here is what drops the connection of a real server). The statuses seen, counted; `chat_headers` authenticate
    /api/chat (an integration's key) where `headers` authenticate the rest."""
    seen: collections.Counter = collections.Counter()
    routes = [(method, url) for method, url in every_route(client.app) if not url.endswith(skip + EVENT_STREAMS)]
    for (method, url), content_type, body in itertools.product(routes, RAW_CONTENT_TYPES, RAW_BODIES):
        sent = chat_headers if chat_headers is not None and url == "/api/chat" else headers
        response = send_raw(client, method, url, body, content_type, sent)
        assert response.status_code < 500, (method, url, content_type, body, response.status_code, response.text)
        seen[response.status_code] += 1
        CASES["raw bodies"] += 1
    return seen


@SQLITE_ONLY
def test_raw_non_utf8_bodies_on_every_route_never_fail(console, errors):
    """Raw non-UTF-8 bytes under every content type on every route, anonymous and then with the admin token and a
    console login (so the bodies get past authentication to the parsers): never a 5xx, never an exception."""
    browser, _ = console
    start = len(errors.records)
    anonymous = raw_bodies_on_every_route(browser, {})
    credentials = {**ADMIN, "X-CSRF-Token": _log_in(browser)}
    chat = make_integration("fuzz").headers
    signed_in = raw_bodies_on_every_route(browser, credentials, skip=("/logout",), chat_headers=chat)
    assert len(every_route(browser.app)) >= 50
    assert signed_in[422] > 0 and signed_in[422] >= anonymous[422], "bodies reached validation with credentials"
    no_new_errors(errors, start)


@SQLITE_ONLY
def test_raw_non_utf8_chat_body_gets_a_422_with_a_reason(client):
    chat = make_integration("raw").headers
    for content_type in ("text/plain", "application/json", "application/x-www-form-urlencoded", None):
        response = send_raw(client, "POST", "/api/chat", b"\xff\xfe", content_type, chat)
        assert response.status_code == 422, (content_type, response.status_code)
        reasons = response.json()["detail"]
        assert reasons and all(reason["msg"] for reason in reasons), response.text


# --- the total ---------------------------------------------------------------------------------------------------


def test_fuzzing_ran_at_least_10000_cases():
    """Last in this module: the fuzz tests above ran ≥ 10,000 cases in total (skipped when some did not run)."""
    missing = [name for name in FUZZ_TESTS if not CASES[name]]
    if missing:
        pytest.skip(f"not every fuzz test ran in this session: {', '.join(missing)}")
    total = sum(CASES.values())
    print(f"\nhostile fuzzing: {total} cases ({', '.join(f'{name} {CASES[name]}' for name in FUZZ_TESTS)})")
    assert total >= MIN_TOTAL_CASES, dict(CASES)
