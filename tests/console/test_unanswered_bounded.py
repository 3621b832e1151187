"""The unanswered-questions page with very long stored messages: one suggestion per cluster, on the matcher's cut
text, cached per knowledge version, and a time budget after which clusters show without one."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core.clock import utc
from core.limits import MATCH_MAX_CHARS
from core.settings import get_settings
from knowledge import unanswered
from knowledge.matcher import Matcher
from tests.console.test_admin_console import adb, console, login, turn  # noqa: F401  (fixtures and helpers)

SH = ZoneInfo("Asia/Shanghai")
# Three different long stories (about 20,000 characters each), each told by two merchants.
STORIES = [
    "开普通发票一定要填购买方税号吗？" + "我们是一家小餐馆，客人吃完饭就要发票，前台小妹不会弄。" * 760,
    "电子税务局登录不上去怎么办？" + "昨天晚上十点还在加班，电脑卡得要命，网络也时好时坏的。" * 760,
    "今天中午吃什么好呢" + "楼下新开了一家面馆，味道还不错，就是排队的人太多了哦。" * 760,
]


def record_stories() -> None:
    when = utc(datetime.now(SH)) - timedelta(hours=1)
    for n, story in enumerate(STORIES):
        assert len(story) > 20000
        for user in ("a", "b"):
            turn(f"{user}{n}", story, "fallback", when)


def spy_on_suggestions(monkeypatch) -> list[str]:
    asked: list[str] = []
    suggest = unanswered.suggest
    monkeypatch.setattr(unanswered, "suggest", lambda matcher, text: asked.append(text) or suggest(matcher, text))
    return asked


def test_the_page_with_long_messages_suggests_once_per_cluster_on_cut_text(console, monkeypatch):  # noqa: F811
    login(console, "admin1")
    record_stories()
    asked = spy_on_suggestions(monkeypatch)
    read: list[int] = []
    prepare = Matcher.prepare
    monkeypatch.setattr(Matcher, "prepare", lambda self, text: read.append(len(text)) or prepare(self, text))
    page = console.get("/console/admin/unanswered")
    assert page.status_code == 200
    assert len(asked) == len(STORIES)  # one per cluster, not one per stored message (six)
    assert read and max(read) <= MATCH_MAX_CHARS  # the matcher never read a whole story
    assert 'value="buyer_taxid_required"' in page.text  # the nearest entry of the first story is pre-filled
    assert console.get("/console/admin/unanswered").status_code == 200
    assert len(asked) == len(STORIES)  # the second view comes from the cache


def test_clusters_over_the_time_budget_show_without_a_suggestion(console, monkeypatch):  # noqa: F811
    login(console, "admin1")
    record_stories()
    asked = spy_on_suggestions(monkeypatch)
    monkeypatch.setenv("UNANSWERED_BUDGET_SECONDS", "0")
    get_settings.cache_clear()
    page = console.get("/console/admin/unanswered")
    assert page.status_code == 200 and asked == []
    assert "开普通发票一定要填购买方税号吗" in page.text and "最接近的条目" not in page.text
    monkeypatch.setenv("UNANSWERED_BUDGET_SECONDS", "30")
    get_settings.cache_clear()
    assert 'value="buyer_taxid_required"' in console.get("/console/admin/unanswered").text
    assert len(asked) == len(STORIES)
