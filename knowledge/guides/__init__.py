"""Troubleshooting guides authored in YAML (one file per FAQ topic) and their loader."""

from knowledge.guides.loader import GUIDE_DIR, check_guides, get_guides, load_guides, parse_guide
from knowledge.guides.models import Guide, GuideError, GuideOption, GuideStep, GuideValue, Problem

__all__ = [
    "GUIDE_DIR",
    "Guide",
    "GuideError",
    "GuideOption",
    "GuideStep",
    "GuideValue",
    "Problem",
    "check_guides",
    "get_guides",
    "load_guides",
    "parse_guide",
]
