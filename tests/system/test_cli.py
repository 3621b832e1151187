"""The installed `merchant-assist` console script, run as a real process against a temporary SQLite file."""

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

CLI = REPO / ".venv" / "bin" / "merchant-assist"
NUMBER = "25112000000098765432"
ROW_KEYS = {"text", "action", "topic", "score", "candidates"}
INTENTS = {"answer", "guide", "clarify", "invoice_lookup", "handoff", "greeting", "smalltalk", "fallback"}

pytestmark = pytest.mark.skipif(not CLI.exists(), reason=f"console script not installed at {CLI}")


def shipped_faq_count() -> int:
    """How many entries the shipped FAQ files hold, read without the code under test."""
    faq_dir = REPO / "knowledge" / "data" / "faq"
    return sum(len(yaml.safe_load(p.read_text(encoding="utf-8"))) for p in faq_dir.glob("*.yaml"))


def make_env(tmp_path: Path, *, embeddings: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    env.pop("REDIS_URL", None)
    if embeddings:
        env.pop("MATCHER_EMBEDDINGS", None)
    else:
        env["MATCHER_EMBEDDINGS"] = "false"
    return env


def run_cli(env: dict[str, str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run the console script from the project directory (var/ is relative to it)."""
    done = subprocess.run(
        [str(CLI), *args], cwd=REPO, env=env, input=stdin, capture_output=True, timeout=300, check=False
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8", errors="replace")
    )


def triage(env: dict[str, str], lines: list[bytes]) -> tuple[list[dict], subprocess.CompletedProcess[str]]:
    done = run_cli(env, "triage", stdin=b"".join(line + b"\n" for line in lines))
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    out_lines = done.stdout.split("\n")
    assert out_lines[-1] == ""  # every row ends with a newline
    rows = [json.loads(line) for line in out_lines[:-1]]
    return rows, done


def check_row(row: dict) -> None:
    assert set(row) >= ROW_KEYS, row
    assert row["action"] in INTENTS
    assert isinstance(row["score"], int | float) and 0.0 <= row["score"] <= 1.0
    assert isinstance(row["candidates"], list) and all(isinstance(c, str) for c in row["candidates"])
    assert row["topic"] is None or isinstance(row["topic"], str)
    assert ("invoice" in row) == (row["action"] == "invoice_lookup"), row


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return make_env(tmp_path)


# --- db ----------------------------------------------------------------------------------------------------


def test_db_upgrade_then_up_to_date(env, tmp_path):
    first = run_cli(env, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "schema upgraded"
    assert (tmp_path / "cli.db").exists()
    second = run_cli(env, "db", "upgrade")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "schema already up to date"


# --- faq export / import -----------------------------------------------------------------------------------


def test_faq_export_edit_import(env, tmp_path):
    exported = tmp_path / "faq.yaml"
    done = run_cli(env, "faq", "export", "-o", str(exported))
    assert done.returncode == 0, done.stderr
    entries = yaml.safe_load(exported.read_text(encoding="utf-8"))
    assert len(entries) == len({e["id"] for e in entries}) == shipped_faq_count()
    assert all(e["version"] == 1 for e in entries)
    assert "服务器繁忙" in exported.read_text(encoding="utf-8")

    # Unchanged file: nothing to do.
    done = run_cli(env, "faq", "import", str(exported))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"created 0, updated 0, unchanged {shipped_faq_count()}"

    edited = next(e for e in entries if e["id"] == "busy_server")
    edited["answer"] = "稍等几分钟再试；仍然繁忙请拨打12366。"
    exported.write_text(yaml.safe_dump(entries, allow_unicode=True, sort_keys=False), encoding="utf-8")
    done = run_cli(env, "faq", "import", str(exported))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"created 0, updated 1, unchanged {shipped_faq_count() - 1}"

    # Export to stdout shows the new answer and version.
    done = run_cli(env, "faq", "export")
    assert done.returncode == 0, done.stderr
    again = {e["id"]: e for e in yaml.safe_load(done.stdout)}
    assert again["busy_server"]["answer"] == "稍等几分钟再试；仍然繁忙请拨打12366。"
    assert again["busy_server"]["version"] == 2
    assert sum(e["version"] for e in again.values()) == shipped_faq_count() + 1


def test_faq_import_creates_new_entry(env, tmp_path):
    new = tmp_path / "new.yaml"
    new.write_text(
        yaml.safe_dump(
            [{"id": "cli_new_entry", "category": "测试", "question": "命令行导入的问题", "answer": "命令行导入的答案"}],
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    done = run_cli(env, "faq", "import", str(new))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "created 1, updated 0, unchanged 0"


MALFORMED = {
    "not_a_list": (b"id: x\nanswer: y\n", "list"),
    "yaml_syntax": (b'- id: [unclosed\n  answer: "x\n', "YAML"),
    "bad_id": ("- id: Bad-Id\n  category: a\n  question: 问题问题\n  answer: 回答回答\n".encode(), "slug"),
    "empty_answer": ("- id: ok_id\n  category: a\n  question: 问题问题\n  answer: ''\n".encode(), "answer"),
    "duplicate_ids": (
        (
            "- id: same\n  category: a\n  question: 问题一\n  answer: 回答一\n"
            "- id: same\n  category: a\n  question: 问题二\n  answer: 回答二\n"
        ).encode(),
        "duplicate ids: same",
    ),
    "invalid_utf8": (b"\xff\xfe\xfa- id: x\n", "utf-8"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_faq_import_malformed_file(env, tmp_path, case):
    content, reason = MALFORMED[case]
    path = tmp_path / f"{case}.yaml"
    path.write_bytes(content)
    done = run_cli(env, "faq", "import", str(path))
    assert done.returncode == 2, (done.stdout, done.stderr[-3000:])
    assert "Traceback" not in done.stderr
    assert f"cannot import {path}" in done.stderr
    assert reason in done.stderr
    assert done.stdout == ""


def test_faq_import_missing_file(env, tmp_path):
    done = run_cli(env, "faq", "import", str(tmp_path / "nope.yaml"))
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "cannot import" in done.stderr and "nope.yaml" in done.stderr


# --- triage ------------------------------------------------------------------------------------------------


def test_triage_one_row_per_line(env):
    long_line = ("开票提示服务器繁忙" * 1200)[:10_000]
    cases: list[tuple[bytes, str]] = [
        ("提示“服务器繁忙，请稍后再试”怎么办？".encode(), "提示“服务器繁忙，请稍后再试”怎么办？"),
        ("人工客服".encode(), "人工客服"),
        ("你好".encode(), "你好"),
        (f"发票号码{NUMBER}查一下".encode(), f"发票号码{NUMBER}查一下"),
        (b"", ""),
        ("😀😀".encode(), "😀😀"),
        (b"\xff\xfe\xfa", "\ufffd\ufffd\ufffd"),
        (long_line.encode(), long_line),
        (json.dumps({"text": "我要转人工"}, ensure_ascii=False).encode(), "我要转人工"),
        ("你好\r".encode(), "你好"),  # a CRLF line ending
    ]
    rows, _ = triage(env, [raw for raw, _ in cases])
    assert len(rows) == len(cases)
    for row, (_, text) in zip(rows, cases, strict=True):
        check_row(row)
        assert row["text"] == text

    faq_row, human, hello, invoice, empty, emoji, garbage, long_row, from_json, crlf = rows
    assert faq_row["action"] == "guide", "busy_server has a troubleshooting guide"
    assert faq_row["topic"] == "busy_server"
    assert faq_row["candidates"][0] == "busy_server"
    assert faq_row["score"] > 0.5
    assert human["action"] == "handoff"
    assert hello["action"] == "greeting"
    assert invoice["action"] == "invoice_lookup"
    assert invoice["invoice"] == {"number": NUMBER}
    for row in (empty, garbage):
        assert row["action"] == "fallback"
        assert row["candidates"] == []
    assert emoji["action"] == "smalltalk", "an emoji-only message is a reaction"
    assert emoji["candidates"] == []
    assert len(long_row["text"]) == 10_000
    assert from_json["action"] == "handoff"
    assert crlf["action"] == "greeting"


def test_triage_empty_input(env):
    rows, done = triage(env, [])
    assert rows == []
    assert done.stdout == ""


def test_triage_json_lines_that_are_not_messages_stay_text(env):
    lines = ['{"text": 5}', "{", "[1, 2]", '{"other": "人工客服"}']
    rows, _ = triage(env, [line.encode() for line in lines])
    assert [r["text"] for r in rows] == lines
    for row in rows:
        check_row(row)


def test_triage_survives_lone_surrogate_in_json(env):
    rows, _ = triage(env, [b'{"text": "\\ud800abc"}', "你好".encode()])
    assert len(rows) == 2
    assert rows[1]["action"] == "greeting"


def test_triage_with_embeddings(tmp_path):
    env = make_env(tmp_path, embeddings=True)
    rows, _ = triage(env, ["开票提示服务器繁忙怎么办".encode(), f"帮我查一下{NUMBER}".encode(), "人工客服".encode()])
    assert len(rows) == 3
    for row in rows:
        check_row(row)
    assert rows[0]["action"] == "guide"
    assert rows[0]["topic"] == "busy_server"
    assert rows[1]["action"] == "invoice_lookup"
    assert rows[1]["invoice"] == {"number": NUMBER}
    assert rows[2]["action"] == "handoff"


# --- chat --------------------------------------------------------------------------------------------------


class Reader:
    """Collects a process's output on a thread, so a test can wait for a line without blocking on the pipe."""

    def __init__(self, stream) -> None:
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        while chunk := stream.read1(4096):
            self.chunks.append(chunk)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8", errors="replace")

    def wait_for(self, wanted: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while wanted not in self.text:
            assert time.monotonic() < deadline, f"{wanted!r} not printed; output so far:\n{self.text[-3000:]}"
            time.sleep(0.05)
        return self.text


def test_chat_shows_an_agents_reply_that_arrives_while_it_is_open(env, monkeypatch):
    from argon2 import PasswordHasher
    from sqlalchemy import select

    from core.database import get_engine, session_scope
    from tests.conftest import clear_process_caches
    from ticketing import replies, staff
    from ticketing.models import Ticket

    chat = subprocess.Popen(
        [str(CLI), "chat", "--user", "t1"], cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        out = Reader(chat.stdout)
        chat.stdin.write("转人工\n".encode())
        chat.stdin.flush()
        out.wait_for("助手> ", timeout=120)
        monkeypatch.setenv("DATABASE_URL", env["DATABASE_URL"])
        monkeypatch.setattr(staff, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
        clear_process_caches()
        with session_scope() as db_session:
            ticket_id = db_session.scalars(select(Ticket.id).where(Ticket.user_id == "t1")).one()
            agent_id = staff.create(db_session=db_session, username="alice", password="correct horse").id
        with session_scope() as db_session:
            replies.send(db_session=db_session, ticket_id=ticket_id, agent_id=agent_id, text="您好，我是客服小王")
        out.wait_for("[客服] 您好，我是客服小王", timeout=10)
        chat.stdin.write(b"/quit\n")
        chat.stdin.flush()
        assert chat.wait(timeout=30) == 0
        assert out.text.count("[客服] 您好，我是客服小王") == 1
    finally:
        if chat.poll() is None:
            chat.kill()
        get_engine().dispose()
        clear_process_caches()
