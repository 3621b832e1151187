"""The key-value store, on both backends (in-process and Redis)."""

import threading
import time

from core.store import MemoryStore

TTL = 0.2
PAST_TTL = 0.4


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_get_missing_key_is_none(store):
    assert store.get("missing") is None
    assert store.get_json("missing") is None


def test_set_get_round_trip(store):
    store.set("plain", "value")
    store.set("chinese", "发票已开具，请查收：数电票 25112000000098765432")
    store.set("empty", "")
    assert store.get("plain") == "value"
    assert store.get("chinese") == "发票已开具，请查收：数电票 25112000000098765432"
    assert store.get("empty") == ""


def test_set_overwrites(store):
    store.set("k", "first")
    store.set("k", "第二")
    assert store.get("k") == "第二"


def test_keys_are_independent(store):
    store.set("a", "1")
    store.set("b", "2")
    store.delete("a")
    assert store.get("a") is None
    assert store.get("b") == "2"


def test_ttl_expiry(store):
    store.set("short", "会过期", ttl=TTL)
    store.set("long", "不过期", ttl=30)
    store.set("forever", "永久")
    store.set("ttl_cleared", "x", ttl=TTL)
    store.set("ttl_cleared", "y")  # a set without ttl makes the key permanent again
    store.set_json("json", ["一", 2], ttl=TTL)
    assert store.get("short") == "会过期"
    assert store.get_json("json") == ["一", 2]
    time.sleep(PAST_TTL)
    assert store.get("short") is None
    assert store.get_json("json") is None
    assert store.get("long") == "不过期"
    assert store.get("forever") == "永久"
    assert store.get("ttl_cleared") == "y"


def test_add_only_when_absent(store):
    assert store.add("dedup", "first") is True
    assert store.add("dedup", "second") is False
    assert store.add("dedup", "third", ttl=5) is False
    assert store.get("dedup") == "first"


def test_add_after_set_is_refused(store):
    store.set("taken", "已存在")
    assert store.add("taken", "新值") is False
    assert store.get("taken") == "已存在"


def test_add_after_delete_succeeds(store):
    assert store.add("k", "1") is True
    store.delete("k")
    assert store.add("k", "2") is True
    assert store.get("k") == "2"


def test_add_races_exactly_one_winner(store):
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            won = store.add("race", f"worker-{index}", ttl=30)
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(won)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors
    assert len(results) == threads_count
    assert results.count(True) == 1
    assert store.get("race") in {f"worker-{i}" for i in range(threads_count)}


def test_add_works_again_after_expiry(store):
    assert store.add("once", "a", ttl=TTL) is True
    assert store.add("once", "b", ttl=TTL) is False
    time.sleep(PAST_TTL)
    assert store.get("once") is None
    assert store.add("once", "c", ttl=TTL) is True
    assert store.get("once") == "c"


def test_incr_counts_and_returns_new_values(store):
    assert store.incr("counter") == 1
    assert store.incr("counter") == 2
    assert store.incr("counter", amount=5) == 7
    assert store.incr("counter", amount=-3) == 4
    assert store.get("counter") == "4"
    assert store.incr("other", amount=10) == 10


def test_incr_ttl_applies_at_creation_then_restarts(store):
    assert store.incr("rate", ttl=TTL) == 1
    # A later ttl does not extend the counter's life: it was fixed at creation.
    assert store.incr("rate", ttl=30) == 2
    assert store.incr("rate", amount=3) == 5
    time.sleep(PAST_TTL)
    assert store.get("rate") is None
    assert store.incr("rate", amount=4, ttl=TTL) == 4


def test_incr_ttl_ignored_for_counter_created_without_ttl(store):
    assert store.incr("permanent") == 1
    assert store.incr("permanent", ttl=TTL) == 2
    time.sleep(PAST_TTL)
    assert store.get("permanent") == "2"


def test_json_round_trip(store):
    value = {
        "pending": ["faq:busy_server", "intent:handoff"],
        "invoice": {"number": "25112000000098765432", "备注": "数电票（增值税专用发票）"},
        "turns": 3,
        "ratio": 0.5,
        "enabled": True,
        "nothing": None,
        "nested": [{"标题": "红字发票", "步骤": ["确认单", "开具"]}],
    }
    store.set_json("session", value)
    assert store.get_json("session") == value
    # Chinese stays readable in the stored form.
    assert "红字发票" in store.get("session")


def test_delete(store):
    store.set("gone", "x")
    store.delete("gone")
    assert store.get("gone") is None
    store.delete("never-existed")  # deleting a missing key is fine
    assert store.get("never-existed") is None


def test_ping(store):
    assert store.ping() is True


def test_memory_store_expiry_with_fake_clock():
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.set("k", "v", ttl=10)
    store.set("forever", "永久")
    clock.advance(9.999)
    assert store.get("k") == "v"
    clock.advance(0.001)  # expiry is inclusive: at exactly ttl the key is gone
    assert store.get("k") is None
    clock.advance(10**6)
    assert store.get("forever") == "永久"


def test_memory_store_add_and_incr_with_fake_clock():
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    assert store.add("dedup", "1", ttl=5) is True
    clock.advance(4)
    assert store.add("dedup", "2", ttl=5) is False
    clock.advance(1)
    assert store.add("dedup", "3", ttl=5) is True
    assert store.get("dedup") == "3"

    assert store.incr("c", ttl=60) == 1
    clock.advance(30)
    assert store.incr("c", ttl=60) == 2  # does not push the expiry back
    clock.advance(30)
    assert store.get("c") is None
    assert store.incr("c", amount=7, ttl=60) == 7
    clock.advance(59)
    assert store.get("c") == "7"


def test_memory_stores_are_separate():
    first, second = MemoryStore(), MemoryStore()
    first.set("k", "v")
    assert second.get("k") is None


def test_memory_store_sweeps_expired_keys_nobody_reads_again():
    """Keys written once and never read (dedup claims, rate counters of one minute) do not pile up."""
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    for n in range(10 * MemoryStore.SWEEP_EVERY):
        store.add(f"wx:msg:{n}", "1", ttl=60)
        store.set(f"kept:{n % 3}", "永久")
    assert store.key_count() == 10 * MemoryStore.SWEEP_EVERY + 3
    clock.advance(60)
    for n in range(MemoryStore.SWEEP_EVERY):  # later traffic sweeps what expired
        store.incr(f"rate:{n}", ttl=120)
    assert store.key_count() == MemoryStore.SWEEP_EVERY + 3
    assert [store.get(f"kept:{n}") for n in range(3)] == ["永久"] * 3
    assert store.get("rate:0") == "1"


def test_memory_store_sweep_skips_keys_whose_ttl_was_renewed():
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    store.set("state", "旧", ttl=10)
    clock.advance(5)
    store.set("state", "新", ttl=10)  # its first expiry is still in the heap
    clock.advance(6)
    for n in range(MemoryStore.SWEEP_EVERY):
        store.set(f"filler:{n}", "x")
    assert store.get("state") == "新"
    clock.advance(4)
    assert store.get("state") is None


def test_memory_store_evicts_least_recently_used_past_its_cap():
    store = MemoryStore(max_keys=100)
    for n in range(100):
        store.set(f"k{n}", str(n), ttl=3600)
    assert store.get("k0") == "0"  # read: now the most recently used
    for n in range(100, 150):
        store.add(f"k{n}", str(n))
    assert store.key_count() == 100
    assert store.get("k0") == "0"
    assert [n for n in range(1, 51) if store.get(f"k{n}") is not None] == []
    assert all(store.get(f"k{n}") == str(n) for n in range(51, 150))


def test_memory_store_drops_expired_keys_before_evicting_live_ones():
    clock = FakeClock()
    store = MemoryStore(clock=clock, max_keys=10)
    store.set("live", "还在")
    for n in range(9):
        store.set(f"short{n}", "x", ttl=1)
    clock.advance(2)
    for n in range(9):
        store.set(f"new{n}", "y", ttl=60)
    assert store.get("live") == "还在"
    assert store.key_count() == 10


def test_configured_store_takes_its_cap_from_the_settings(app_env, monkeypatch):
    from core.store import get_store
    from tests.conftest import clear_process_caches

    monkeypatch.setenv("MEMORY_STORE_MAX_KEYS", "5")
    clear_process_caches()
    store = get_store()
    for n in range(20):
        store.set(f"k{n}", "v")
    assert store.key_count() == 5


def test_an_empty_memory_store_is_truthy():
    """Callers write `store or MemoryStore()`: an empty store must not be replaced by a new one."""
    assert MemoryStore()
