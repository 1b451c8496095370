"""Point a survey's images somewhere else: e.g. at Qualtrics' own image library.

:func:`replace_image_urls` rewrites every ``<img src>`` of a survey's questions
(``docs/user_study.md``, "Hosting the images in Qualtrics").
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from dubfiv.study.qsf.reader import QsfError, parse_qsf

__all__ = ["replace_image_urls"]


def replace_image_urls(qsf: Mapping[str, Any], url_for: Mapping[str, str] | Callable[[str], str]
                       ) -> dict[str, Any]:
    """A copy of a survey with every ``<img src="URL">`` replaced.

    ``url_for`` maps an old URL to the new one (a dict, e.g. built from the
    image library's URLs of each uploaded file, or a function). With a dict,
    every image URL of the survey must be in it (:class:`QsfError` lists the
    missing ones), so no image is left pointing to the old host.
    """
    urls = parse_qsf(qsf).image_urls
    if isinstance(url_for, Mapping):
        missing = [u for u in urls if u not in url_for]
        if missing:
            raise QsfError(f"no new URL for {len(missing)} image(s), e.g. {missing[0]}")
        mapping = dict(url_for)
    else:
        mapping = {u: url_for(u) for u in urls}
    out = json.loads(json.dumps(qsf))
    pattern = re.compile(r"""(<img\b[^>]*?\bsrc\s*=\s*["'])([^"']*)(["'])""", re.IGNORECASE)

    def swap(match: re.Match[str]) -> str:
        old = html.unescape(match.group(2))
        new = mapping.get(old, old)
        return match.group(1) + html.escape(new, quote=True) + match.group(3)

    for element in out["SurveyElements"]:
        payload = element.get("Payload")
        if element.get("Element") == "SQ" and isinstance(payload, dict):
            payload["QuestionText"] = pattern.sub(swap, str(payload.get("QuestionText", "")))
    return out
