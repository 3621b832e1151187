"""Validated shapes of FAQ entries for import, export and the admin API."""

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.text import unix_newlines

SLUG = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


class FaqIn(BaseModel):
    """An FAQ entry as an admin writes it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    category: str = Field(min_length=1, max_length=64)
    question: str = Field(min_length=2, max_length=500)
    alternates: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    answer: str = Field(min_length=2, max_length=5000)
    source: str = Field(default="", max_length=1000)  # title and date of the rule the answer rests on
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not SLUG.match(value):
            raise ValueError("id must be a slug: lower-case letters, digits and underscores, starting with a letter")
        return value

    @field_validator("question", "answer", "source", mode="before")
    @classmethod
    def _newlines(cls, value: object) -> object:
        return unix_newlines(value) if isinstance(value, str) else value

    @field_validator("alternates", "keywords")
    @classmethod
    def _clean_list(cls, values: list[str]) -> list[str]:
        seen: dict[str, None] = {}
        for v in values:
            v = str(v).strip()
            if v:
                seen.setdefault(v, None)
        return list(seen)


class FaqOut(FaqIn):
    """An FAQ entry as stored, with its version."""

    model_config = ConfigDict(from_attributes=True)

    version: int
