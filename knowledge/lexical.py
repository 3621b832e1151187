"""Sparse lexical index: TF-IDF over character and pinyin n-grams, scored per phrasing with numpy."""

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from knowledge.text import syllable

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
        self._order = order
        sorted_groups = np.asarray(groups, dtype=np.int64)[order]
        self._group_of = sorted_groups
        self._starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
        self._present = sorted_groups[self._starts]

        bags = [features(phrasings[i]) for i in order]
        df: Counter[str] = Counter()
        for group_feats in _group_feature_sets(bags, sorted_groups):
            df.update(group_feats)
        total = max(n_groups, 1)
        self.idf = {f: math.log((total + 1) / (d + 1)) + 1.0 for f, d in df.items()}

        postings: dict[str, list[tuple[int, float]]] = {}
        for row, bag in enumerate(bags):
            vec = self._weigh(bag)
            for feat, w in vec.items():
                postings.setdefault(feat, []).append((row, w))
        self._postings = {
            f: (np.fromiter((r for r, _ in p), np.int64, len(p)), np.fromiter((w for _, w in p), np.float32, len(p)))
            for f, p in postings.items()
        }

    def _weigh(self, bag: Counter[str]) -> dict[str, float]:
        vec = {f: (1.0 + math.log(c) if c >= 1 else c) * self.idf.get(f, 0.0) for f, c in bag.items()}
        norm = math.sqrt(sum(w * w for w in vec.values())) or 1.0
        return {f: w / norm for f, w in vec.items() if w}

    def query_vector(self, text_units: Sequence[str]) -> dict[str, float]:
        """The query's weighted, normalised feature vector (unknown features dropped)."""
        bag = Counter({f: c for f, c in features(text_units).items() if f in self.idf})
        return self._weigh(bag)

    def group_scores(self, text_units: Sequence[str]) -> np.ndarray:
        """Cosine similarity of the query to each group's best phrasing (0 for groups without phrasings)."""
        scores = np.zeros(self.n_groups, dtype=np.float32)
        qvec = self.query_vector(text_units)
        if not qvec or not self.n:
            return scores
        rows, weights = [], []
        for feat, qw in qvec.items():
            r, w = self._postings[feat]
            rows.append(r)
            weights.append(w * qw)
        per_row = np.bincount(np.concatenate(rows), weights=np.concatenate(weights), minlength=self.n)
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
