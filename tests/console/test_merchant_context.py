"""Merchant-centred context in the console on each database: private data kept out of lists and transcripts, the
invoice and guide path carried into the ticket, the merchant page, and search."""

from core.conversation import service as conversation_service
from core.database import session_scope
from core.messages import IncomingMessage, Reply
from merchants import service as merchant_service
from tests.console.test_console import console, handoff, logged_in, visible_text  # noqa: F401 (fixture)
from ticketing.models import Ticket

TAX_ID = "91110108MA01ABCD5T"
CODE = "12345678"


def said(user_id: str, text: str, intent: str, *, channel: str = "telegram", reply: str = "好的") -> None:
    """A recorded turn of the conversation: what the merchant said and how the bot took it."""
    with session_scope() as db_session:
        conversation_service.record_turn(
            db_session=db_session,
            message=IncomingMessage(channel=channel, user_id=user_id, text=text),
            reply=Reply(text=reply, intent=intent),
        )


def make_merchant(name: str = "北京好运商贸有限公司", tax_ids: tuple[str, ...] = (TAX_ID,)) -> int:
    with session_scope() as db_session:
        return merchant_service.create(db_session=db_session, name=name, tax_ids=list(tax_ids)).id


# --- privacy and noise ---------------------------------------------------------------------------------------


def test_the_subject_is_the_merchants_question_and_no_code_or_tax_id_reaches_the_queue(console):  # noqa: F811
    client, _ = logged_in(console, "alice")
    make_merchant()
    said("8001", "你好", "greeting")
    said("8001", f"绑定 {TAX_ID} {CODE}", "binding", reply="绑定成功！")
    said("8001", "开票时提示可用授信额度不足怎么办", "answer")
    ticket_id = handoff("8001", text="转人工")
    with session_scope() as db_session:
        assert db_session.get(Ticket, ticket_id).subject == "开票时提示可用授信额度不足怎么办"

    queue = client.get("/console/queue").text
    assert "开票时提示可用授信额度不足怎么办" in queue
    assert CODE not in queue and TAX_ID not in queue

    page = client.get(f"/console/tickets/{ticket_id}").text
    assert f"绑定 {TAX_ID} ******" in visible_text(page), "the code is masked in the transcript"
    assert CODE not in page


def test_a_handoff_message_with_a_problem_gives_the_subject_and_old_subjects_are_masked_in_the_queue(console):  # noqa: F811
    client, _ = logged_in(console, "alice")
    first = handoff("8002", text="转人工，发票开不出来")
    said("8003", f"绑定 {TAX_ID} {CODE}", "binding")
    leaked = handoff("8003", text="转人工")
    with session_scope() as db_session:
        assert db_session.get(Ticket, first).subject == "发票开不出来"
        assert db_session.get(Ticket, leaked).subject == "", "a binding command is never the subject"
        db_session.get(Ticket, leaked).subject = f"绑定 {TAX_ID} {CODE} 电话13812345678"  # stored before masking
    queue = client.get("/console/queue").text
    for secret in (TAX_ID, CODE, "13812345678"):
        assert secret not in queue
    assert "138****5678" in queue
