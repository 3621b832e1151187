"""Sparse lexical index: TF-IDF over character and pinyin n-grams, scored per phrasing with numpy."""

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from core.text import syllable

PINYIN_WEIGHT = 0.8


def features(text_units: Sequence[str]) -> Counter[str]:
    """Character and pinyin unigrams and bigrams of a unit sequence, with weights."""
    feats: Counter[str] = Counter()
    sounds = [syllable(u) for u in text_units]
    for i, unit in enumerate(text_units):
        feats["c" + unit] += 1.0
        feats["p" + sounds[i]] += PINYIN_WEIGHT
        if i:
            feats["c" + text_units[i - 1] + unit] += 1.0
            feats["p" + sounds[i - 1] + " " + sounds[i]] += PINYIN_WEIGHT
    return feats


class LexicalIndex:
    """Inverted index of phrasings; each phrasing belongs to one group (a topic)."""

    def __init__(self, phrasings: Sequence[Sequence[str]], groups: Sequence[int], n_groups: int) -> None:
        self.n_groups = n_groups
        self.n = len(phrasings)
        order = np.argsort(np.asarray(groups, dtype=np.int64), kind="stable")
        sorted_groups = np.asarray(groups, dtype=np.int64)[order]
        self._starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
        self._present = sorted_groups[self._starts]

        bags = [features(phrasings[i]) for i in order]
        df: Counter[str] = Counter()
        for group_feats in _group_feature_sets(bags, sorted_groups):
            df.update(group_feats)
        total = max(n_groups, 1)
        self._feature_id = {f: i for i, f in enumerate(df)}
        self._idf = np.array([math.log((total + 1) / (d + 1)) + 1.0 for d in df.values()], dtype=np.float32)

        postings: list[list[tuple[int, float]]] = [[] for _ in self._feature_id]
        for row, bag in enumerate(bags):
            ids, weights = self._weigh(bag)
            for fid, w in zip(ids.tolist(), weights.tolist(), strict=True):
                postings[fid].append((row, w))
        # Postings in CSR layout: feature f's rows and weights are [_ptr[f], _ptr[f + 1]).
        self._ptr = np.zeros(len(postings) + 1, dtype=np.int64)
        self._ptr[1:] = np.cumsum([len(p) for p in postings])
        self._rows = np.fromiter((r for p in postings for r, _ in p), np.int64, int(self._ptr[-1]))
        self._weights = np.fromiter((w for p in postings for _, w in p), np.float32, int(self._ptr[-1]))

    def _weigh(self, bag: Counter[str]) -> tuple[np.ndarray, np.ndarray]:
        """Known feature ids of a bag and their normalised TF-IDF weights."""
        known = [(self._feature_id[f], c) for f, c in bag.items() if f in self._feature_id]
        if not known:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        ids = np.fromiter((i for i, _ in known), np.int64, len(known))
        counts = np.fromiter((c for _, c in known), np.float32, len(known))
        weights = np.where(counts >= 1, 1.0 + np.log(np.maximum(counts, 1.0)), counts) * self._idf[ids]
        norm = float(np.sqrt(np.dot(weights, weights))) or 1.0
        return ids, (weights / norm).astype(np.float32)

    def group_scores(self, bag: Counter[str]) -> np.ndarray:
        """Cosine similarity of a query's features to each group's best phrasing (0 for groups without any)."""
        scores = np.zeros(self.n_groups, dtype=np.float32)
        ids, qweights = self._weigh(bag)
        if not len(ids) or not self.n:
            return scores
        starts, ends = self._ptr[ids], self._ptr[ids + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        if not total:
            return scores
        # Gather every posting of every query feature without a Python loop.
        offsets = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(total)
        contributions = self._weights[offsets] * np.repeat(qweights, lengths)
        per_row = np.bincount(self._rows[offsets], weights=contributions, minlength=self.n)
        scores[self._present] = np.maximum.reduceat(per_row, self._starts)
        return scores


def _group_feature_sets(bags: list[Counter[str]], groups: np.ndarray):
    current: set[str] = set()
    last = None
    for bag, g in zip(bags, groups, strict=True):
        if g != last and last is not None:
            yield current
            current = set()
        current.update(bag)
        last = g
    if last is not None:
        yield current
