"""index.html: static checks, and a real headless Chromium driven by Playwright.

The browser machinery lives in ``browser_check.py`` (shared with the exporter's and
the jsPsych runtime's browser tests): it opens the page, collects JS exceptions,
``console.error`` and failed loads, and reads every ``<img>``'s ``complete``/``naturalWidth``.
A deliberately broken page shows that it catches a missing image, an uncaught
exception and ``console.error``. Skipped with a reason if no Chromium is found.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from browser_check import check_page, require_browser

from dubfiv.study.build.preview import write_preview
from dubfiv.study.content import StudyError


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        if tag == "img":
            self.imgs.append(d)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def test_preview_is_self_contained(study_dir) -> None:
    study, folder = study_dir
    path = write_preview(study, folder)
    text = path.read_text(encoding="utf-8")
    tags = _Tags()
    tags.feed(text)
    assert len(tags.imgs) == len(study.images())
    for img in tags.imgs:
        src = img["src"] or ""
        assert "://" not in src and not src.startswith("/")
        assert (folder / unquote(src)).is_file(), src
    assert all(u.startswith("#") or "://" not in u for u in tags.urls)
    assert "<link" not in text and "@import" not in text
    for cond in study.conditions:
        assert f'id="condition-{cond.key}"' in text
    for attr in study.attributes:
        assert attr.label in text
    assert text.count('type="radio"') == (
        2 + len(study.device_choices) + 2 * len(study.attributes) + 5 * len(study.attributes)
        + 2 * len(study.tasks))
    assert "disabled" in text
    hidden = write_preview(study, folder, show_answers=False).read_text(encoding="utf-8")
    assert "model logit" in text and "model logit" not in hidden
    assert "Stretchy" not in "".join(str(i.get("alt")) for i in tags.imgs[-3:])


def test_preview_refuses_missing_images(study_dir) -> None:
    study, folder = study_dir
    (folder / "images" / "inn" / "overview.png").unlink()
    with pytest.raises(StudyError, match=r"overview\.png' does not exist"):
        write_preview(study, folder)
    assert not (folder / "index.html").exists()


# ---------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_browser()


def test_checker_catches_broken_pages(chromium: str, tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (5, 4), (255, 0, 0)).save(tmp_path / "ok.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really")
    page = tmp_path / "broken.html"
    page.write_text(
        '<!DOCTYPE html><html><body><img src="ok.png"><img src="missing.png">'
        '<img src="corrupt.png">'
        '<script>console.error("deliberate console error");</script>'
        '<script>undefinedFunction();</script></body></html>')
    result = check_page(chromium, page, tmp_path / "profile")
    widths = {src: width for src, _, width, _ in result["images"]}
    assert widths == {"ok.png": 5, "missing.png": 0, "corrupt.png": 0}
    text = "\n".join(result["errors"])
    assert "deliberate console error" in text
    assert "undefinedFunction is not defined" in text
    assert "missing.png" in text  # failed load reported by the Log domain


def test_preview_loads_without_errors_and_shows_every_image(chromium: str, study_dir,
                                                            tmp_path: Path) -> None:
    study, folder = study_dir
    page = write_preview(study, folder)
    result = check_page(chromium, page, tmp_path / "profile")
    assert result["errors"] == []
    assert len(result["images"]) == len(study.images())
    assert all(complete and width > 0 for _, complete, width, _ in result["images"]), result
    assert min(css for *_, css in result["images"]) >= 128
