"""Pinyin typed for Chinese: latin runs of a message ("fapiao zuofei", "发票zuofei") read back as the knowledge
base's own words, so that they match like the Han characters they stand for.

The index maps the toneless pinyin of every 2-4 character stretch of the FAQ phrasings, keywords and lexicon
to its most frequent Han spelling (all readings of a polyphonic character count: 重开 is chongkai and zhongkai).
A latin stretch is rewritten only when it splits wholly into pinyin syllables and at least half of them fall in
words of the vocabulary; runs with digits (error codes, invoice numbers, tax ids) and the lexicon's own latin
words (ukey, ca, pdf, hc) are left alone.
"""

import itertools
import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from pypinyin import Style, lazy_pinyin, pinyin

from core.text import fold, pinyin_syllables

_HAN_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
# Latin words separated by spaces or apostrophes (xi'an), not touching a digit or another letter.
_SPAN = re.compile(r"(?<![a-z0-9])[a-z]+(?:[\s']+[a-z]+)*(?![a-z0-9])")
_WORD = re.compile(r"[a-z]+")
_LATIN = re.compile(r"[a-z]")
MAX_CHARS = 4
MAX_READINGS = 8
MAX_SYLLABLE = 6
PHRASE_WEIGHT = 10


@lru_cache(maxsize=16384)
def char_readings(char: str) -> tuple[str, ...]:
    """Every toneless reading of a Han character."""
    return tuple(sorted(set(pinyin(char, style=Style.NORMAL, heteronym=True)[0])))


def readings(word: str) -> list[tuple[str, ...]]:
    """The toneless syllable sequences a Han word may be read as (at most MAX_READINGS)."""
    return list(itertools.islice(itertools.product(*map(char_readings, word)), MAX_READINGS))


class PinyinIndex:
    """Toneless pinyin of the vocabulary's words, back to their Han spelling."""

    def __init__(self, texts: Iterable[str], *, background: Iterable[str] = (), protected: Iterable[str] = ()) -> None:
        counts: Counter[str] = Counter()
        usual: dict[str, set[tuple[str, ...]]] = {}
        for weight, group in ((PHRASE_WEIGHT, texts), (1, background)):
            for text in group:
                for run in _HAN_RUN.findall(fold(text)):
                    sounds = lazy_pinyin(run, style=Style.NORMAL)  # read in context: one syllable a character
                    for size in range(1, MAX_CHARS + 1):
                        for i in range(len(run) - size + 1):
                            word = run[i : i + size]
                            counts[word] += weight
                            usual.setdefault(word, set()).add(tuple(sounds[i : i + size]))
        # A word's reading in context beats a rarer reading of its characters (的 is de before it is di).
        best: dict[tuple[str, ...], tuple[bool, int, str]] = {}
        for word, count in counts.items():
            for sounds in {*usual[word], *readings(word)}:
                rank = (sounds in usual[word], count, word)
                if best.get(sounds, (False, 0, ""))[:2] < rank[:2]:
                    best[sounds] = rank
        # letters -> [(syllables, spelling)], most frequent spelling first
        self._words: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        for sounds, (_, _, word) in sorted(best.items(), key=lambda kv: kv[1][:2], reverse=True):
            self._words.setdefault("".join(sounds), []).append((sounds, word))
        self._longest = max((len(k) for k in self._words), default=0)
        self._protected = frozenset(protected)
        self._syllables = pinyin_syllables()

    def convert(self, text: str) -> str:
        """The text with every pinyin stretch written in the vocabulary's Han words; other text as it was."""
        if not _LATIN.search(text.lower()):
            return text
        folded = fold(text)
        return _SPAN.sub(self._span, folded)

    def _span(self, match: re.Match[str]) -> str:
        pieces: list[str] = []
        group: list[str] = []
        for word in _WORD.findall(match.group(0)):
            if word in self._protected:
                pieces += [self._group(group), word]
                group = []
            else:
                group.append(word)
        pieces.append(self._group(group))
        converted = " ".join(p for p in pieces if p)
        return converted if converted != " ".join(_WORD.findall(match.group(0))) else match.group(0)

    def _group(self, words: list[str]) -> str:
        """Han spelling of consecutive latin words, or the words themselves when they are not pinyin."""
        if not words:
            return ""
        letters = "".join(words)
        # Where a typed word ends a syllable must end too: a piece may only cross such a cut where it splits.
        cuts, at = set(), 0
        for w in words[:-1]:
            at += len(w)
            cuts.add(at)
        n = len(letters)
        # best[i] = (pieces, syllables in vocabulary words, syllables, spelling) of letters[i:]; the fewest syllables
        # win (xian is one syllable unless typed xi'an), then the most in vocabulary words, then the fewest pieces.
        best: list[tuple[int, int, int, str] | None] = [None] * (n + 1)
        best[n] = (0, 0, 0, "")
        for i in range(n - 1, -1, -1):
            options: list[tuple[int, int, int, str]] = []
            for j in range(i + 1, min(n, i + max(self._longest, MAX_SYLLABLE)) + 1):
                rest = best[j]
                if rest is None:
                    continue
                piece = letters[i:j]
                inside = {c - i for c in cuts if i < c < j}
                for sounds, word in self._words.get(piece, ()):
                    if inside <= set(itertools.accumulate(len(s) for s in sounds)):
                        known = len(sounds) if len(sounds) > 1 else 0
                        options.append((rest[0] + 1, rest[1] + known, rest[2] + len(sounds), word + rest[3]))
                        break
                else:
                    if piece in self._syllables and not inside:
                        options.append((rest[0] + 1, rest[1], rest[2] + 1, piece + rest[3]))
            if options:
                best[i] = min(options, key=lambda o: (o[2], -o[1], o[0]))
        parsed = best[0]
        if parsed is None or parsed[1] < 2 or 2 * parsed[1] < parsed[2]:
            return " ".join(words)
        return parsed[3]
