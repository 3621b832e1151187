"""Chinese text normalisation and the units the matcher compares (characters, pinyin, codes)."""

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from pypinyin import Style, lazy_pinyin

# A Han character, or a run of latin letters/digits (error codes such as 09D11F stay whole).
_UNIT = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[a-z0-9]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]")
_SPACE = re.compile(r"\s+")
_LINE_BREAK = re.compile(r"\r\n?")
_LATIN = re.compile(r"[a-z]+")
# Device and platform error codes: 6 hex-like characters with at least one digit and one letter.
_ERROR_CODE = re.compile(r"(?<![0-9a-z])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{6}(?![0-9a-z])")


def clean(text: str) -> str:
    """Fold full-width forms, drop control characters and squeeze whitespace."""
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub("", text)
    return _SPACE.sub(" ", text).strip()


def unix_newlines(text: str) -> str:
    """Text with CRLF and lone CR line breaks as LF (browsers submit a textarea's lines with CRLF)."""
    return _LINE_BREAK.sub("\n", text)


def fold(text: str) -> str:
    """Return the comparable form of a text: cleaned and lower-cased."""
    return clean(text).lower()


def units(text: str) -> list[str]:
    """Split folded text into Han characters and latin/digit runs; punctuation and emoji drop out."""
    return _UNIT.findall(text)


def error_codes(text: str) -> list[str]:
    """Return the device/platform error codes (e.g. 09d11f) in folded text."""
    return _ERROR_CODE.findall(text)


@lru_cache(maxsize=65536)
def syllable(unit: str) -> str:
    """Return the toneless pinyin of a Han character, or the unit itself."""
    if len(unit) == 1 and "\u3400" <= unit <= "\ufaff":
        return lazy_pinyin(unit, style=Style.NORMAL)[0]
    return unit


@lru_cache(maxsize=1)
def pinyin_syllables() -> frozenset[str]:
    """Every toneless pinyin syllable (ü written v) of the common Han characters."""
    return frozenset(lazy_pinyin("".join(map(chr, range(0x4E00, 0x9FA6))), style=Style.NORMAL))


@dataclass
class Lexicon:
    """Domain synonyms folded to one canonical form, latin abbreviations, and filler phrases that carry no meaning."""

    synonyms: dict[str, list[str]] = field(default_factory=dict)
    fillers: list[str] = field(default_factory=list)
    domain_terms: list[str] = field(default_factory=list)
    abbreviations: dict[str, list[str]] = field(default_factory=dict)
    non_domain: list[str] = field(default_factory=list)  # words that contain a domain character but are not (机票)
    contrasts: list[list[list[str]]] = field(default_factory=list)  # [[one side's phrases], [the other side's]]
    aspects: dict[str, list[str]] = field(default_factory=dict)  # a side of a subject (accounting…) and its words

    def __post_init__(self) -> None:
        # Latin shorthand (uk, hc) is replaced only as a whole latin run: "uk" in "ukey" or "duke" stays.
        self._expansion = {fold(a): fold(full) for full, abbrs in self.abbreviations.items() for a in abbrs}
        words = alternation(self._expansion)
        self._abbreviation_re = re.compile(rf"(?<![a-z0-9])(?:{words.pattern})(?![a-z0-9])") if words else None
        self._canonical: dict[str, str] = {}
        for canonical, variants in self.synonyms.items():
            for variant in variants:
                self._canonical[fold(variant)] = fold(canonical)
        self._synonym_re = alternation(self._canonical)
        self._filler_re = alternation({fold(f): "" for f in self.fillers})
        terms = [self.canonicalize(fold(t)) for t in self.domain_terms]
        self._domain_chars = alternation([t for t in terms if len(units(t)) == 1])
        self._domain_sounds = alternation([f" {sounds(t)} " for t in terms if len(units(t)) > 1])
        self._non_domain_re = alternation([self.canonicalize(fold(w)) for w in self.non_domain])
        self._contrasts = [
            tuple(alternation([self.canonicalize(fold(p)) for p in side]) for side in pair) for pair in self.contrasts
        ]
        self._aspects = {
            name: alternation([self.canonicalize(fold(w)) for w in words]) for name, words in self.aspects.items()
        }

    def canonicalize(self, folded: str) -> str:
        """Replace every known abbreviation and variant by its canonical form and drop filler phrases."""
        if self._abbreviation_re is not None:
            folded = self._abbreviation_re.sub(lambda m: self._expansion[m.group(0)], folded)
        if self._synonym_re is not None:
            folded = self._synonym_re.sub(lambda m: self._canonical[m.group(0)], folded)
        if self._filler_re is not None:
            folded = self._filler_re.sub("", folded)
        return folded

    def sides(self, canonical: str) -> tuple[int, ...]:
        """For each contrast, which side canonicalised text takes: 1 the first, -1 the second, 0 neither or both
        (the second side, which holds the negated phrases, is read first and taken out)."""
        taken = []
        for first, second in self._contrasts:
            rest = second.sub(" ", canonical) if second is not None else canonical
            says_second = rest != canonical
            says_first = first is not None and first.search(rest) is not None
            taken.append(int(says_first) - int(says_second))
        return tuple(taken)

    def aspects_said(self, canonical: str) -> frozenset[str]:
        """The aspects (the accounting side, retention, penalties…) canonicalised text speaks of."""
        return frozenset(name for name, words in self._aspects.items() if words is not None and words.search(canonical))

    @property
    def vocabulary(self) -> list[str]:
        """Every word the lexicon knows: canonical forms, variants, abbreviations' expansions, domain terms."""
        variants = [v for vs in self.synonyms.values() for v in vs]
        return [*self.synonyms, *variants, *self.abbreviations, *self.domain_terms]

    @property
    def latin_terms(self) -> frozenset[str]:
        """Latin words the vocabulary uses as such (ukey, ca, pdf, hc): never to be read as pinyin."""
        words = [*self._expansion, *self._canonical, *self._canonical.values(), *map(fold, self.domain_terms)]
        return frozenset(run for w in words for run in _LATIN.findall(w))

    def is_domain(self, canonical: str) -> bool:
        """True when canonicalised text mentions an invoice/tax term, allowing homophone typos."""
        if self._non_domain_re is not None:
            canonical = self._non_domain_re.sub(" ", canonical)
        if self._domain_chars is not None and self._domain_chars.search(canonical):
            return True
        return self._domain_sounds is not None and bool(self._domain_sounds.search(f" {sounds(canonical)} "))


def sounds(text: str) -> str:
    """The units of a text as space-separated pinyin syllables."""
    return " ".join(syllable(u) for u in units(text))


def alternation(words) -> re.Pattern[str] | None:
    """A regex matching any of the words, longest first; None for no words."""
    if not words:
        return None
    ordered = sorted(words, key=len, reverse=True)
    return re.compile("|".join(re.escape(w) for w in ordered))
