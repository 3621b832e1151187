"""WeChat channel: pushes built as WeChat builds them (plain, compatible, safe mode), the 5-second rule and retries,
guards, reply rendering, and the 客服 API sender against a fake Tencent server."""

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import xmltodict
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from wechatpy.crypto import WeChatCrypto

from bot.channels.wechat import inbound, render, views
from bot.channels.wechat.sender import TokenCache, WeChatSender, kf_unavailable, kf_unavailable_key, token_key
from core.database import session_scope
from core.messages import IncomingMessage, Option, Reply
from core.outbox.models import SENT, OutboxMessage
from core.outbox.senders import RetryLater, Undeliverable
from core.outbox.worker import deliver_due
from core.settings import Settings, get_settings
from core.store import MemoryStore, get_store
from tests.conftest import SHARED, clear_process_caches
from tests.fakes.tencent import FakeTencent

FIXTURES = SHARED / "fixtures" / "wechat"
TOKEN = "test-token"
APPID = "wx-test-app"
SECRET = "test-secret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OPENID = "oUser-0001"
GH = "gh_merchant_assist"


# --- fixtures and helpers ---


class FakeRouter:
    """Stands in for the router: records calls, optionally sleeps, answers `make(text)`."""

    def __init__(self, make: Callable[[str], Reply] | None = None, delay: float = 0.0) -> None:
        self.calls: list[IncomingMessage] = []
        self.delay = delay
        self.make = make or (lambda text: Reply(text=f"收到：{text}", intent="answer"))
        self._lock = threading.Lock()

    def handle(self, message: IncomingMessage, *, db_session) -> Reply:
        with self._lock:
            self.calls.append(message)
        time.sleep(self.delay)
        return self.make(message.text)

    @property
    def texts(self) -> list[str]:
        return [call.text for call in self.calls]


def set_wechat_env(monkeypatch, **overrides: str) -> None:
    values = {
        "WECHAT_TOKEN": TOKEN,
        "WECHAT_APP_ID": APPID,
        "WECHAT_APP_SECRET": SECRET,
        "WECHAT_AES_KEY": AES_KEY,
        "WECHAT_REPLY_BUDGET_SECONDS": "2.0",
        "RUN_WORKER_IN_SERVE": "false",
        "WECHAT_REQUIRE_ENCRYPTION": "false",  # most tests post plain pushes; encryption-required has its own tests
    } | overrides
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    clear_process_caches()


@pytest.fixture
def wechat_env(monkeypatch, tmp_path) -> Iterator[None]:
    """WeChat settings, a throw-away SQLite file and a fresh in-process store (no database work expected)."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'wechat.db'}")
    set_wechat_env(monkeypatch)
    yield
    clear_process_caches()


@pytest.fixture
def router() -> FakeRouter:
    return FakeRouter()


def small_app(router: FakeRouter | None = None) -> FastAPI:
    """The WeChat routes alone, answering through `router`."""
    app = FastAPI()
    app.state.message_router = router
    app.include_router(views.router)
    return app


def full_app(router: FakeRouter | None = None) -> FastAPI:
    """The real application (its outbox worker off: tests deliver explicitly), with `router` when given."""
    from bot.app import create_app

    return create_app(message_router=router)


@pytest.fixture
def client(wechat_env, router) -> Iterator[TestClient]:
    with TestClient(small_app(router)) as test_client:
        yield test_client


@pytest.fixture
def fake_tencent() -> Iterator[FakeTencent]:
    fake = FakeTencent(appid=APPID, secret=SECRET).start()
    yield fake
    fake.stop()


def sign(*parts: str) -> str:
    import hashlib

    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


NONCES = itertools.count(1320562132)


def query(*, token: str = TOKEN, timestamp: str | None = None, nonce: str | None = None, **extra: str) -> dict:
    """A signed query; a fresh nonce unless given (WeChat never reuses one for another push)."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or str(next(NONCES))
    return {"signature": sign(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, **extra}


def text_push(content: str, *, msg_id: int = 6054768590064713728, openid: str = OPENID) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{GH}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )


def event_push(event: str, key: str | None = None, *, created: int = 1700000000) -> str:
    key_xml = f"<EventKey><![CDATA[{key}]]></EventKey>" if key is not None else ""
    return (
        f"<xml><ToUserName><![CDATA[{GH}]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
        f"<CreateTime>{created}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event>{key_xml}</xml>"
    )


def post(client: TestClient, xml: str | bytes, **params: str):
    return client.post("/wechat", params=query(openid=OPENID) | params, content=xml)


def reply_content(response) -> str:
    """The Content of a plain passive text reply."""
    assert response.status_code == 200, response.text
    data = xmltodict.parse(response.text)["xml"]
    assert data["MsgType"] == "text"
    return data["Content"]


def is_ack(response) -> bool:
    return response.status_code == 200 and response.text == "success"


def encrypted_push(crypto: WeChatCrypto, xml: str, *, mode: str, timestamp: str, nonce: str) -> tuple[str, str]:
    """(body, msg_signature) as WeChat sends them in compatible or safe mode."""
    envelope = xmltodict.parse(crypto.encrypt_message(xml, nonce, timestamp))["xml"]
    cipher = f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt>"
    body = (
        xml.replace("</xml>", cipher + "</xml>")
        if mode == "compat"
        else f"<xml><ToUserName>{GH}</ToUserName>{cipher}</xml>"
    )
    return body, envelope["MsgSignature"]


def decrypt_reply(crypto: WeChatCrypto, response, *, timestamp: str, nonce: str) -> dict:
    """The decrypted reply, checking it reuses the request's timestamp and nonce."""
    assert response.status_code == 200, response.text
    envelope = xmltodict.parse(response.text)["xml"]
    assert envelope["TimeStamp"] == timestamp and envelope["Nonce"] == nonce
    plain = crypto.decrypt_message(response.text, envelope["MsgSignature"], timestamp, nonce)
    return xmltodict.parse(plain)["xml"]


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def outbox_rows() -> list[OutboxMessage]:
    with session_scope() as db_session:
        return list(db_session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


# --- URL verification (GET) ---


def test_get_verification_with_the_documented_vector(wechat_env, monkeypatch):
    set_wechat_env(monkeypatch, WECHAT_TOKEN="AAAAA")
    params = {
        "signature": "f464b24fc39322e44b38aa78f5edd27bd1441696",
        "timestamp": "1714036504",
        "nonce": "1514711492",
        "echostr": "4375120948345356249",
    }
    response = TestClient(small_app()).get("/wechat", params=params)
    assert response.status_code == 200
    assert response.text == "4375120948345356249"
    assert response.headers["content-type"].startswith("text/plain")


def test_get_verification_rejects_a_bad_signature(client):
    bad = query(echostr="123") | {"signature": "0" * 40}
    response = client.get("/wechat", params=bad)
    assert response.status_code == 403 and response.json()["detail"] == "bad signature"
    assert client.get("/wechat", params={"echostr": "1"}).status_code == 403
    assert client.get("/wechat", params=query(echostr="42")).text == "42"


def test_endpoint_is_off_without_a_token(wechat_env, monkeypatch):
    monkeypatch.delenv("WECHAT_TOKEN")
    clear_process_caches()
    assert TestClient(small_app()).get("/wechat", params=query(echostr="1")).status_code == 404


# --- every sample push in plain mode ---

ROUTED = {
    "01_text.xml": "this is a test",
    "04_voice_recognition.xml": "腾讯微信团队",
    "10_event_subscribe.xml": "你好",
    "12_event_subscribe_qrscene.xml": "你好",
    "15_event_CLICK.xml": "菜单",  # EventKey "EVENTKEY" is not one of ours → the menu
}
STATIC = {
    "02_image.xml": inbound.MEDIA_REPLY,
    "03_voice.xml": inbound.VOICE_REPLY,
    "05_video.xml": inbound.MEDIA_REPLY,
    "06_shortvideo.xml": inbound.MEDIA_REPLY,
    "07_location.xml": inbound.MEDIA_REPLY,
    "08_link.xml": inbound.MEDIA_REPLY,
}
SAMPLES = sorted(p.name for p in FIXTURES.glob("[0-2]*.xml")) if FIXTURES.is_dir() else []


def test_samples_are_present_or_skipped():
    if not FIXTURES.is_dir():
        pytest.skip("shared WeChat fixtures absent")
    assert len(SAMPLES) == 22 and set(ROUTED) | set(STATIC) <= set(SAMPLES)


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_push_gets_a_sensible_answer(client, router, name):
    response = post(client, (FIXTURES / name).read_bytes())
    assert response.status_code == 200
    if name in ROUTED:
        assert router.texts == [ROUTED[name]]
        assert reply_content(response) == f"收到：{ROUTED[name]}"
    elif name in STATIC:
        assert router.calls == []
        assert reply_content(response) == STATIC[name]
    else:
        assert router.calls == [] and response.text == "success"


def test_routed_message_identity(client, router):
    reply_content(post(client, text_push("开票提示服务器繁忙", msg_id=77)))
    (call,) = router.calls
    assert (call.channel, call.user_id, call.message_id) == ("wechat", OPENID, "77")


def test_reply_is_addressed_back_to_the_sender(client):
    data = xmltodict.parse(post(client, text_push("你好")).text)["xml"]
    assert (data["ToUserName"], data["FromUserName"]) == (OPENID, GH)


@pytest.mark.parametrize(
    ("key", "routed"), [("FAQ_MENU", "菜单"), ("INVOICE_LOOKUP", "查发票"), ("HANDOFF", "转人工"), ("OTHER", "菜单")]
)
def test_menu_click_keys(client, router, key, routed):
    reply_content(post(client, event_push("CLICK", key)))
    assert router.texts == [routed]


@pytest.mark.parametrize(
    "event", ["unsubscribe", "VIEW", "SCAN", "LOCATION", "TEMPLATESENDJOBFINISH", "kf_close_session", "whatever"]
)
def test_events_without_a_reply_are_acked(client, router, event):
    assert is_ack(post(client, event_push(event, "x")))
    assert router.calls == []


def test_file_message_gets_the_media_help(client, router):
    xml = text_push("x").replace("<MsgType><![CDATA[text]]>", "<MsgType><![CDATA[file]]>")
    assert reply_content(post(client, xml)) == inbound.MEDIA_REPLY and router.calls == []


# --- the real router behind the endpoint (each database) ---


def test_real_router_answers_menu_click_and_subscribe(app_env, monkeypatch):
    set_wechat_env(monkeypatch, WECHAT_REPLY_BUDGET_SECONDS="4.0")
    with TestClient(full_app()) as client:
        menu = reply_content(post(client, event_push("subscribe")))
        assert "发票助手" in menu and "1. 常见问题" in menu and menu.endswith(render.CHOOSE_HINT)
        lookup = reply_content(post(client, event_push("CLICK", "INVOICE_LOOKUP", created=1700000001)))
        assert "发票号码" in lookup
        handoff = reply_content(post(client, event_push("CLICK", "HANDOFF", created=1700000002)))
        assert "人工" in handoff and "工单 T" in handoff
        assert is_ack(post(client, text_push("发票一直开不出来", msg_id=8))), "a person has it: the bot is silent"
        assert "已结束人工服务" in reply_content(post(client, text_push("结束", msg_id=10)))
        answer = reply_content(post(client, text_push("发票号码25112000000098765432查一下", msg_id=9)))
        assert "25112000000098765432" in answer


def test_real_router_understands_answers_in_words_and_asks_whether_an_answer_helped(app_env, monkeypatch):
    set_wechat_env(monkeypatch, WECHAT_REPLY_BUDGET_SECONDS="4.0")
    with TestClient(full_app()) as client:
        asked = reply_content(post(client, text_push("发票查询提示未找到相关记录", msg_id=21)))
        assert "刚刚才开的吗" in asked and "2. 不是，之前开的" in asked
        onward = reply_content(post(client, text_push("不是，上个月开的", msg_id=22)))
        assert "开票日期范围" in onward
        menu = reply_content(post(client, text_push("菜单", msg_id=23)))
        assert "发票助手" in menu and "继续刚才的排查" in menu
        answer = reply_content(post(client, text_push("电子普票开错了怎么作废", msg_id=24)))
        assert "1. 有帮助\n2. 没解决" in answer
        assert "抱歉没能帮您解决" in reply_content(post(client, text_push("没解决", msg_id=25)))


# --- compatible and safe (AES) modes ---


@pytest.mark.parametrize("mode", ["compat", "safe"])
def test_encrypted_modes_decrypt_and_reply_encrypted(client, router, mode):
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    timestamp, nonce = str(int(time.time())), "98765"
    body, msg_signature = encrypted_push(crypto, text_push("你好"), mode=mode, timestamp=timestamp, nonce=nonce)
    params = query(timestamp=timestamp, nonce=nonce, encrypt_type="aes", msg_signature=msg_signature)
    response = client.post("/wechat", params=params, content=body)
    reply = decrypt_reply(crypto, response, timestamp=timestamp, nonce=nonce)
    assert reply["Content"] == "收到：你好" and reply["ToUserName"] == OPENID
    assert router.texts == ["你好"]


def use_tencent_vector(monkeypatch) -> dict:
    """Configure the app with Tencent's published encryption sample (skipped when the shared fixtures are absent)."""
    params_file = FIXTURES / "40_41_encrypted.params.json"
    if not params_file.exists():
        pytest.skip("shared WeChat fixtures absent")
    vector = json.loads(params_file.read_text(encoding="utf-8"))
    set_wechat_env(
        monkeypatch,
        WECHAT_TOKEN=vector["token"],
        WECHAT_AES_KEY=vector["encoding_aes_key"],
        WECHAT_APP_ID=vector["appid"],
        WECHAT_TIMESTAMP_WINDOW_SECONDS=str(10**10),  # the sample is from 2014
    )
    return vector


@pytest.mark.parametrize("name", ["40_encrypted_compat_mode.xml", "41_encrypted_safe_mode.xml"])
def test_tencent_encrypted_vectors(wechat_env, router, monkeypatch, name):
    vector = use_tencent_vector(monkeypatch)
    q = vector["query"]
    params = q | {"signature": sign(vector["token"], q["timestamp"], q["nonce"]), "openid": "o"}
    response = TestClient(small_app(router)).post("/wechat", params=params, content=(FIXTURES / name).read_bytes())
    assert router.texts == ["abcdteT"]
    assert router.calls[0].message_id == "6054768590064713728"
    crypto = WeChatCrypto(vector["token"], vector["encoding_aes_key"], vector["appid"])
    reply = decrypt_reply(crypto, response, timestamp=q["timestamp"], nonce=q["nonce"])
    assert reply["Content"] == "收到：abcdteT"


def test_bad_msg_signature_is_forbidden(client, router):
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    timestamp, nonce = str(int(time.time())), "1"
    body, _ = encrypted_push(crypto, text_push("你好"), mode="safe", timestamp=timestamp, nonce=nonce)
    params = query(timestamp=timestamp, nonce=nonce, encrypt_type="aes", msg_signature="f" * 40)
    response = client.post("/wechat", params=params, content=body)
    assert response.status_code == 403 and response.json()["detail"] == "bad msg_signature"
    assert router.calls == []


def test_undecryptable_pushes_are_acked(client, router):
    timestamp, nonce = str(int(time.time())), "1"
    other = WeChatCrypto(TOKEN, "B" * 43, APPID)  # wrong key: UnicodeDecodeError or padding garbage inside wechatpy
    body, msg_signature = encrypted_push(other, text_push("你好"), mode="safe", timestamp=timestamp, nonce=nonce)
    params = query(timestamp=timestamp, nonce=nonce, encrypt_type="aes", msg_signature=msg_signature)
    assert is_ack(client.post("/wechat", params=params, content=body))
    no_cipher = "<xml><ToUserName>x</ToUserName></xml>"
    params = query(timestamp=timestamp, nonce="2", encrypt_type="aes", msg_signature=msg_signature)
    assert is_ack(client.post("/wechat", params=params, content=no_cipher))
    garbage = f"<xml><Encrypt>{'A' * 64}</Encrypt></xml>"
    nonce = "3"
    params = query(
        timestamp=timestamp, nonce=nonce, encrypt_type="aes", msg_signature=sign(TOKEN, timestamp, nonce, "A" * 64)
    )
    assert is_ack(client.post("/wechat", params=params, content=garbage))
    assert router.calls == []


# --- guards ---


def test_forged_signature_is_forbidden(client, router):
    params = query() | {"signature": sign("not-the-token", "1", "2")}
    response = client.post("/wechat", params=params, content=text_push("你好"))
    assert response.status_code == 403 and response.json()["detail"] == "bad signature"
    assert client.post("/wechat", content=text_push("你好")).status_code == 403
    assert router.calls == []


def test_stale_timestamp_is_forbidden(client, router):
    old = str(int(time.time()) - 301)
    response = client.post("/wechat", params=query(timestamp=old), content=text_push("你好"))
    assert response.status_code == 403 and "stale" in response.json()["detail"]
    future = str(int(time.time()) + 3600)
    assert client.post("/wechat", params=query(timestamp=future), content=text_push("你好")).status_code == 403
    assert client.post("/wechat", params=query(timestamp="soon"), content=text_push("你好")).status_code == 403
    assert router.calls == []


def test_oversized_body_is_rejected(client, router):
    big = text_push("票" * (1024 * 1024 // 3))
    assert client.post("/wechat", params=query(), content=big).status_code == 413

    def chunks():  # no Content-Length: the cap applies while streaming
        for _ in range(20):
            yield b"x" * 8192

    assert client.post("/wechat", params=query(), content=chunks()).status_code == 413
    assert router.calls == []


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">]>
<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&lol2;</Content><MsgId>1</MsgId></xml>"""
XXE = """<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>a</ToUserName><FromUserName>b</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>2</MsgId></xml>"""


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        XXE,
        "<xml><unclosed>",
        "not xml at all",
        "",
        "<other/>",
        "<xml><Content>x</Content></xml>",
        b"\xff\xfe",
    ],
    ids=["billion-laughs", "xxe", "malformed", "text", "empty", "wrong-root", "no-msgtype", "bad-bytes"],
)
def test_hostile_or_broken_bodies_are_acked(client, router, body):
    assert is_ack(post(client, body))
    assert router.calls == []


def test_hostile_body_inside_aes_is_acked(client, router):
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    timestamp, nonce = str(int(time.time())), "1"
    body, msg_signature = encrypted_push(crypto, XXE, mode="safe", timestamp=timestamp, nonce=nonce)
    params = query(timestamp=timestamp, nonce=nonce, encrypt_type="aes", msg_signature=msg_signature)
    assert is_ack(client.post("/wechat", params=params, content=body))
    params = query(timestamp=timestamp, encrypt_type="aes", msg_signature=msg_signature)
    assert is_ack(client.post("/wechat", params=params, content=BILLION_LAUGHS))
    assert router.calls == []


def test_cdata_terminator_in_a_reply_cannot_inject_xml(client, router):
    evil = "a]]><Evil>1</Evil><![CDATA[b"
    router.make = lambda text: Reply(text=evil, intent="answer", options=[Option("x]]><MsgType>news</MsgType>", "p")])
    response = post(client, text_push("hi"))
    data = xmltodict.parse(response.text)["xml"]
    assert "Evil" not in data and data["MsgType"] == "text"
    assert data["Content"].startswith(evil) and "1. x]]><MsgType>news</MsgType>" in data["Content"]


def test_router_failure_gives_an_apology(client, router):
    def boom(text):
        raise RuntimeError("database down")

    router.make = boom
    assert reply_content(post(client, text_push("hi"))) == inbound.ERROR_REPLY


# --- the 5-second rule, retries and de-duplication ---


def test_retry_storm_runs_the_router_once(client, router):
    router.delay = 0.4
    xml = text_push("开票失败怎么办", msg_id=4242)
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda _: post(client, xml), range(5)))
    assert len(router.calls) == 1
    bodies = {r.text for r in responses}
    assert len(bodies) == 1  # the concurrent retries waited for the first delivery's reply
    assert reply_content(responses[0]) == "收到：开票失败怎么办"
    assert post(client, xml).text in bodies  # a retry after completion: the very same XML
    assert len(router.calls) == 1


def test_retries_of_an_event_are_deduplicated(client, router):
    first = post(client, event_push("subscribe"))
    again = post(client, event_push("subscribe"))
    assert first.text == again.text and len(router.calls) == 1
    post(client, event_push("subscribe", created=1700000099))
    assert len(router.calls) == 2


def test_retry_in_encrypted_mode_gets_the_reply_encrypted_for_its_own_nonce(client, router):
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    contents = []
    for nonce in ("111", "222"):
        timestamp = str(int(time.time()))
        body, msg_signature = encrypted_push(
            crypto, text_push("你好", msg_id=5), mode="safe", timestamp=timestamp, nonce=nonce
        )
        params = query(timestamp=timestamp, nonce=nonce, encrypt_type="aes", msg_signature=msg_signature)
        response = client.post("/wechat", params=params, content=body)
        contents.append(decrypt_reply(crypto, response, timestamp=timestamp, nonce=nonce)["Content"])
    assert contents == ["收到：你好", "收到：你好"] and len(router.calls) == 1


def test_same_msg_id_from_two_openids_is_two_pushes(client, router):
    """MsgId is unique per follower only: a second openid with the same MsgId gets its own answer, not the first's."""
    first = reply_content(post(client, text_push("开票失败怎么办", msg_id=777, openid="oUser-A")))
    second = reply_content(post(client, text_push("怎么查验发票", msg_id=777, openid="oUser-B")))
    assert (first, second) == ("收到：开票失败怎么办", "收到：怎么查验发票")
    assert [(c.user_id, c.text) for c in router.calls] == [("oUser-A", "开票失败怎么办"), ("oUser-B", "怎么查验发票")]
    assert inbound.dedupe_key(views.parse_message(text_push("x", msg_id=777, openid="oUser-A"))) == (
        "wx:msg:oUser-A:777"
    )
    click = views.parse_message(event_push("CLICK", "FAQ_MENU", created=1700000001))
    assert inbound.dedupe_key(click) == f"wx:evt:{OPENID}:1700000001:click"


# --- replayed URLs and plaintext while encryption is on ---


def test_captured_push_url_replayed_with_another_body_is_refused(client, router):
    """Plain mode signs no body: a captured URL (signature, timestamp, nonce) must not carry a forged message."""
    params = query(openid=OPENID)
    genuine = text_push("你好", msg_id=8001)
    assert reply_content(client.post("/wechat", params=params, content=genuine)) == "收到：你好"
    for forged in (text_push("转人工", msg_id=8002), text_push("你好", msg_id=8001, openid="oVictim"), b""):
        response = client.post("/wechat", params=params, content=forged)
        assert response.status_code == 403 and "replayed" in response.json()["detail"], response.text
    assert router.texts == ["你好"]


def test_wechat_retry_with_the_same_url_and_body_gets_the_cached_reply(client, router):
    """WeChat re-sends the very same request (nonce, timestamp, signature, body) when it hears nothing in 5 s."""
    params, push = query(openid=OPENID), text_push("开票失败怎么办", msg_id=8101)
    replies = [client.post("/wechat", params=params, content=push) for _ in range(4)]
    assert {r.status_code for r in replies} == {200} and len({r.text for r in replies}) == 1
    assert reply_content(replies[0]) == "收到：开票失败怎么办" and len(router.calls) == 1


def test_seen_nonces_are_remembered_in_the_shared_store(client, router):
    params = query(openid=OPENID)
    assert client.post("/wechat", params=params, content=text_push("你好", msg_id=8201)).status_code == 200
    keys = [key for key in get_store()._data if key.startswith("wx:nonce:")]
    assert len(keys) == 1
    get_store().delete(keys[0])  # forgotten (e.g. past the window): the same URL with a new body is not refused
    assert client.post("/wechat", params=params, content=text_push("查发票", msg_id=8202)).status_code == 200


@pytest.fixture
def encrypted_only(wechat_env, monkeypatch, router) -> Iterator[TestClient]:
    """WECHAT_REQUIRE_ENCRYPTION as deployed: unset, so on because an AES key is configured."""
    monkeypatch.delenv("WECHAT_REQUIRE_ENCRYPTION")
    clear_process_caches()
    with TestClient(small_app(router)) as test_client:
        yield test_client


def test_plaintext_pushes_are_refused_while_an_aes_key_is_configured(encrypted_only, router):
    response = post(encrypted_only, text_push("转人工"))
    assert response.status_code == 403 and "encryption is required" in response.json()["detail"]
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    for mode in ("compat", "safe"):
        timestamp, nonce = str(int(time.time())), f"enc-{mode}"
        body, msg_signature = encrypted_push(
            crypto, text_push(mode, msg_id=9000 + len(mode)), mode=mode, timestamp=timestamp, nonce=nonce
        )
        params = query(timestamp=timestamp, nonce=nonce, encrypt_type="aes", msg_signature=msg_signature)
        response = encrypted_only.post("/wechat", params=params, content=body)
        assert decrypt_reply(crypto, response, timestamp=timestamp, nonce=nonce)["Content"] == f"收到：{mode}"
    assert router.texts == ["compat", "safe"]
    assert encrypted_only.get("/wechat", params=query(echostr="hello")).text == "hello"  # URL check is never encrypted


def test_tencent_compat_vector_without_encrypt_type_is_refused(wechat_env, router, monkeypatch):
    """The compatible-mode sample carries plaintext fields too: posted as plaintext it is refused, not routed."""
    vector = use_tencent_vector(monkeypatch)
    monkeypatch.delenv("WECHAT_REQUIRE_ENCRYPTION")
    clear_process_caches()
    q = vector["query"]
    params = {k: v for k, v in q.items() if k not in ("encrypt_type", "msg_signature")}
    params |= {"signature": sign(vector["token"], q["timestamp"], q["nonce"]), "openid": "o"}
    body = (FIXTURES / "40_encrypted_compat_mode.xml").read_bytes()
    response = TestClient(small_app(router)).post("/wechat", params=params, content=body)
    assert response.status_code == 403 and router.calls == []


def test_plaintext_is_accepted_without_an_aes_key_or_when_allowed(wechat_env, router, monkeypatch):
    set_wechat_env(monkeypatch, WECHAT_AES_KEY="")
    monkeypatch.delenv("WECHAT_REQUIRE_ENCRYPTION")  # unset, and no key: plain mode
    clear_process_caches()
    with TestClient(small_app(router)) as test_client:
        assert reply_content(post(test_client, text_push("你好", msg_id=1))) == "收到：你好"
    set_wechat_env(monkeypatch, WECHAT_REQUIRE_ENCRYPTION="false")  # a key, but plaintext explicitly allowed
    with TestClient(small_app(router)) as test_client:
        assert reply_content(post(test_client, text_push("查发票", msg_id=2))) == "收到：查发票"
    assert router.texts == ["你好", "查发票"]


@pytest.fixture
def outbox_env(app_env, monkeypatch, router, fake_tencent) -> Iterator[TestClient]:
    """The real database (each kind, migrated), a short reply budget and the fake Tencent API."""
    set_wechat_env(monkeypatch, WECHAT_REPLY_BUDGET_SECONDS="0.5", WECHAT_API_BASE=fake_tencent.base_url)
    from bot.bootstrap import prepare_database

    prepare_database()
    with TestClient(small_app(router)) as test_client:
        yield test_client


def test_slow_reply_is_acked_at_once_and_delivered_through_the_outbox(outbox_env, router, fake_tencent):
    router.delay = 1.2
    router.make = lambda text: Reply(
        text="慢慢来的答案", intent="answer", options=[Option("转人工客服", "intent:handoff")]
    )
    xml = text_push("一个很难的问题", msg_id=999)
    started = time.monotonic()
    assert is_ack(post(outbox_env, xml))
    assert time.monotonic() - started < 1.0
    assert is_ack(post(outbox_env, xml))  # WeChat retry while the first is still running
    rows = wait_for(lambda: [row for row in outbox_rows() if row.payload["text"] != inbound.LOST_REPLY])
    time.sleep(0.2)
    assert len(outbox_rows()) == 1 and len(router.calls) == 1
    (row,) = rows
    assert (row.channel, row.recipient, row.dedupe_key) == ("wechat", OPENID, f"wechat:wx:msg:{OPENID}:999")
    assert is_ack(post(outbox_env, xml))  # a retry after the hand-off is acked at once
    assert deliver_due(senders={"wechat": WeChatSender()}) == 1
    assert fake_tencent.sent == [
        {"touser": OPENID, "msgtype": "text", "text": {"content": "慢慢来的答案\n\n1. 转人工客服\n回复数字选择"}}
    ]
    assert outbox_rows()[0].status == SENT
    assert len(router.calls) == 1


def test_long_reply_goes_first_part_passive_and_rest_to_the_outbox(outbox_env, router, fake_tencent):
    lines = [f"第{i}步：请在电子税务局中点击“开票业务”，再选择“蓝字发票开具”并核对购买方信息。" for i in range(60)]
    router.make = lambda text: Reply(text="\n".join(lines), intent="answer")
    first = reply_content(post(outbox_env, text_push("开票流程", msg_id=31)))
    assert len(first.encode()) <= render.PASSIVE_LIMIT_BYTES and first.startswith(lines[0])
    (row,) = wait_for(outbox_rows)
    assert row.dedupe_key == f"wechat:wx:msg:{OPENID}:31:part2"
    assert first + "\n" + row.payload["text"] == "\n".join(lines)
    deliver_due(senders={"wechat": WeChatSender()})
    assert first + "\n" + "\n".join(fake_tencent.texts()) == "\n".join(lines)
    assert all(len(text.encode()) <= render.CUSTOM_LIMIT_BYTES for text in fake_tencent.texts())


def test_without_the_kf_api_replies_stay_passive(client, router):
    get_store().set(kf_unavailable_key(APPID), "1")
    router.make = lambda text: Reply(text="很长的说明。" * 400, intent="answer")
    content = reply_content(post(client, text_push("长", msg_id=1)))
    assert len(content.encode()) <= render.PASSIVE_LIMIT_BYTES and content.endswith(inbound.TRUNCATED_NOTE)


def test_without_the_kf_api_a_slow_reply_gets_a_passive_apology(client, router, monkeypatch):
    monkeypatch.setenv("WECHAT_REPLY_BUDGET_SECONDS", "0.3")
    get_settings.cache_clear()
    get_store().set(kf_unavailable_key(APPID), "1")
    router.delay = 0.6
    assert reply_content(post(client, text_push("慢", msg_id=2))) == inbound.SLOW_REPLY


# --- rendering ---


def test_options_are_numbered_with_the_hint():
    reply = Reply(text="请选择：", intent="clarify", options=[Option("开票", "faq:a"), Option("红冲", "faq:b")])
    assert render.reply_text(reply) == "请选择：\n\n1. 开票\n2. 红冲\n回复数字选择"
    assert render.reply_text(Reply(text="好的", intent="answer")) == "好的"
    assert (
        render.payload_text({"text": "好", "options": [{"label": "甲", "payload": "x"}]}) == "好\n\n1. 甲\n回复数字选择"
    )


@pytest.mark.parametrize("text", ["票" * 3000, "ab\n" * 2000, "短行\n" + "长" * 1500 + "\n尾", "😀" * 1000 + "x"])
@pytest.mark.parametrize("limit", [render.PASSIVE_LIMIT_BYTES, render.CUSTOM_LIMIT_BYTES, 7])
def test_split_keeps_every_character_under_the_byte_limit(text, limit):
    parts = render.split_text(text, limit)
    assert all(0 < len(part.encode()) <= limit for part in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")


def test_split_prefers_line_boundaries():
    lines = ["第一行" * 100, "第二行" * 100, "第三行" * 100]
    assert render.split_text("\n".join(lines), 2000) == ["\n".join(lines[:2]), lines[2]]
    assert render.split_passive("短") == ("短", "")


# --- the 客服 API sender against the fake Tencent server ---


def sender_for(fake: FakeTencent, store=None, **kwargs) -> WeChatSender:
    settings = Settings(wechat_app_id=APPID, wechat_app_secret=SECRET, wechat_api_base=fake.base_url)
    return WeChatSender(settings=settings, store=store or MemoryStore(), **kwargs)


def test_sender_fetches_the_token_once_and_caches_it_in_the_store(fake_tencent):
    store = MemoryStore()
    sender_for(fake_tencent, store).send(OPENID, {"text": "一", "options": []})
    sender_for(fake_tencent, store).send(OPENID, {"text": "二", "options": []})
    assert fake_tencent.token_fetches == 1 and fake_tencent.texts() == ["一", "二"]
    assert store.get(token_key(APPID)).startswith("TOKEN-1-")


@pytest.mark.parametrize("invalidate", ["revoke_tokens", "expire_tokens"])
def test_rejected_token_is_refreshed_once_and_the_send_retried(fake_tencent, invalidate):
    sender = sender_for(fake_tencent)
    sender.send(OPENID, {"text": "一"})
    getattr(fake_tencent, invalidate)()
    sender.send(OPENID, {"text": "二"})
    assert fake_tencent.token_fetches == 2 and fake_tencent.texts() == ["一", "二"]
    assert fake_tencent.send_attempts == 3


def test_token_rejected_twice_means_retry_later(fake_tencent):
    sender = sender_for(fake_tencent)
    fake_tencent.fail_next_sends(40001, 40001, 40001)
    with pytest.raises(RetryLater):
        sender.send(OPENID, {"text": "x"})
    assert fake_tencent.token_fetches == 2 and fake_tencent.send_attempts == 2


@pytest.mark.parametrize(
    ("errcode", "reason"), [(45015, "window closed"), (45047, "quota used"), (48001, "not permitted")]
)
def test_permanent_errors_are_undeliverable(fake_tencent, errcode, reason):
    store = MemoryStore()
    fake_tencent.fail_next_sends(errcode)
    with pytest.raises(Undeliverable) as caught:
        sender_for(fake_tencent, store).send(OPENID, {"text": "x"})
    assert (caught.value.reason, caught.value.code) == (reason, str(errcode))
    assert kf_unavailable(store, APPID) is (errcode == 48001)


def test_rate_limit_http_errors_and_timeouts_mean_retry_later(fake_tencent):
    sender = sender_for(fake_tencent, timeout=0.3)
    fake_tencent.fail_next_sends(45009)
    with pytest.raises(RetryLater) as caught:
        sender.send(OPENID, {"text": "x"})
    assert caught.value.retry_after
    fake_tencent.fail_next_http(502)
    with pytest.raises(RetryLater):
        sender.send(OPENID, {"text": "x"})
    fake_tencent.delay_next_sends(1.0)
    with pytest.raises(RetryLater):
        sender.send(OPENID, {"text": "x"})


def test_wrong_secret_and_unreachable_api_mean_retry_later(fake_tencent):
    settings = Settings(wechat_app_id=APPID, wechat_app_secret="wrong", wechat_api_base=fake_tencent.base_url)
    with pytest.raises(RetryLater, match="40125"):
        WeChatSender(settings=settings, store=MemoryStore()).send(OPENID, {"text": "x"})
    unreachable = Settings(wechat_app_id=APPID, wechat_app_secret=SECRET, wechat_api_base="http://127.0.0.1:9")
    with pytest.raises(RetryLater):
        WeChatSender(settings=unreachable, store=MemoryStore(), timeout=0.5).send(OPENID, {"text": "x"})


def test_long_text_is_split_and_a_resend_skips_delivered_parts(fake_tencent):
    store = MemoryStore()
    sender = sender_for(fake_tencent, store)
    text = "\n".join(f"第{i}条说明：发票红冲需先确认购买方是否已用于抵扣。" for i in range(120))
    parts = render.split_text(text, render.CUSTOM_LIMIT_BYTES)
    assert len(parts) >= 3
    fake_tencent.fail_next_sends(0, 45009)  # part 1 delivered, part 2 rate-limited
    with pytest.raises(RetryLater):
        sender.send(OPENID, {"text": text, "options": []})
    sender.send(OPENID, {"text": text, "options": []})
    assert fake_tencent.texts() == parts
    sender.send(OPENID, {"text": text, "options": []})  # a new message with the same text goes out whole
    assert fake_tencent.texts() == parts + parts


def test_one_token_refresher_across_workers(store):
    fetches = []

    def fetch():
        fetches.append(1)
        time.sleep(0.2)
        return {"access_token": f"T{len(fetches)}", "expires_in": 7200}

    caches = [TokenCache(store=store, appid="wx-shared", fetch=fetch) for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        tokens = list(pool.map(lambda cache: cache.get(), caches))
    assert tokens == ["T1"] * 6 and len(fetches) == 1
    assert caches[0].refresh(stale="T1") == "T2" and caches[1].refresh(stale="T1") == "T2"
    assert len(fetches) == 2


def test_serve_delivers_slow_replies_with_its_own_outbox_worker(app_env, monkeypatch, router, fake_tencent):
    """The whole app as `serve` runs it: a slow reply is acked, queued, and sent by the worker inside the app."""
    set_wechat_env(
        monkeypatch,
        WECHAT_REPLY_BUDGET_SECONDS="0.3",
        WECHAT_API_BASE=fake_tencent.base_url,
        RUN_WORKER_IN_SERVE="true",
        OUTBOX_POLL_SECONDS="0.1",
    )
    router.delay = 0.8
    router.make = lambda text: Reply(text="稍后送达的答案", intent="answer")
    with TestClient(full_app(router)) as client:
        assert is_ack(post(client, text_push("一个慢问题", msg_id=4242)))
        sent = wait_for(lambda: fake_tencent.texts(), timeout=10)
    assert sent == ["稍后送达的答案"]
    assert [row.status for row in outbox_rows()] == [SENT]


# --- WeCom samples at the Official Account endpoint ---


@pytest.mark.skipif(not FIXTURES.exists(), reason="../shared fixtures not present")
def test_wecom_plain_text_sample_is_answered_like_any_text(client, router):
    content = reply_content(post(client, (FIXTURES / "30_wecom_text_agentid.xml").read_bytes()))
    assert content == "收到：this is a test"
    assert [(m.channel, m.user_id, m.text) for m in router.calls] == [("wechat", "fromUser", "this is a test")]


@pytest.mark.skipif(not FIXTURES.exists(), reason="../shared fixtures not present")
def test_wecom_encrypted_sample_without_an_oa_signature_is_refused(client, router):
    """WeCom signs only msg_signature; an OA endpoint requires `signature` too, so the push is refused, not crashed."""
    params = json.loads((FIXTURES / "31_wecom_encrypted.params.json").read_text(encoding="utf-8"))["post_query"]
    response = client.post(
        "/wechat", params={**params, "encrypt_type": "aes"}, content=(FIXTURES / "31_wecom_encrypted.xml").read_bytes()
    )
    assert response.status_code == 403 and response.json()["detail"]
    assert router.calls == []
