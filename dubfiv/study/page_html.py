"""HTML of study pages and images, shared by the survey writers and the preview.

:func:`render_page_html` gives one :class:`~dubfiv.study.content.Page` as an
HTML fragment (inline styles only: Qualtrics drops ``<style>``); every image
is shown at least :data:`MIN_IMAGE_PX` CSS px wide (:func:`display_width`).
"""

from __future__ import annotations

import html
from collections.abc import Callable

from dubfiv.study.content import Page, StudyImage

__all__ = ["MAX_ROW_PX", "MIN_IMAGE_PX", "display_width", "img_tag", "render_page_html"]


MIN_IMAGE_PX = 128
"""Smallest on-screen width (CSS px) of any study image: cells stay legible."""
MAX_ROW_PX = 720
"""A grid row's images share about this many CSS px (but each gets at least MIN_IMAGE_PX)."""


def display_width(img: StudyImage, cols: int = 1) -> int:
    """CSS width of an image shown in a row of ``cols`` images (at least MIN_IMAGE_PX)."""
    share = MAX_ROW_PX // max(cols, 1)
    if cols == 1 and img.width:
        share = min(img.width, MAX_ROW_PX)
    return max(MIN_IMAGE_PX, share)


def img_tag(img: StudyImage, src: str, width: int) -> str:
    """An ``<img>`` shown ``width`` CSS px wide; ``max-width:none`` so that a survey theme's
    ``max-width:100%`` cannot shrink it below that (a wide row scrolls instead)."""
    attrs = [f'src="{html.escape(src, quote=True)}"',
             f'alt="{html.escape(img.alt or img.caption, quote=True)}"']
    if img.width and img.height:
        attrs += [f'width="{img.width}"', f'height="{img.height}"']
    attrs.append(f'style="width:{width}px;max-width:none;height:auto;"')
    return "<img " + " ".join(attrs) + ">"


def render_page_html(page: Page, src_for: Callable[[StudyImage], str],
                     heading: str = "h3") -> str:
    """HTML of one page: title, text, then the images (as a labelled table for a grid).

    ``src_for`` maps an image to its ``src`` (a URL for Qualtrics, a relative
    path for the preview). Titles, captions and labels are escaped; ``page.text``
    is HTML and inserted as is. Inline styles only (Qualtrics drops ``<style>``).
    Every image is at least :data:`MIN_IMAGE_PX` CSS px wide; a table wider than
    the page scrolls sideways (``overflow-x:auto``).
    """
    parts = [f"<{heading}>{html.escape(page.title)}</{heading}>"]
    if page.text:
        parts.append(f"<div>{page.text}</div>")
    grid = page.grid
    if grid is None:
        for img in page.images:
            parts.append('<figure style="margin:0.5em 0;overflow-x:auto;">'
                         + img_tag(img, src_for(img), display_width(img)))
            if img.caption:
                parts.append(f"<figcaption>{html.escape(img.caption)}</figcaption>")
            parts.append("</figure>")
        return "\n".join(parts)
    cell = "padding:2px;text-align:center;vertical-align:middle;"
    rows = ['<div style="overflow-x:auto;">',
            '<table style="border-collapse:collapse;margin:0.5em 0;">']
    if grid.col_labels:
        head = f'<th style="{cell}"></th>' if grid.row_labels else ""
        head += "".join(f'<th style="{cell}">{html.escape(lab)}</th>' for lab in grid.col_labels)
        rows.append(f"<tr>{head}</tr>")
    for r in range(grid.rows):
        cells = ""
        if grid.row_labels:
            cells += f'<th style="{cell}">{html.escape(grid.row_labels[r])}</th>'
        for c in range(grid.cols):
            img = page.images[r * grid.cols + c]
            caption = (f'<br><span style="font-size:0.9em;">{html.escape(img.caption)}</span>'
                       if img.caption else "")
            cells += (f'<td style="{cell}">'
                      f"{img_tag(img, src_for(img), display_width(img, grid.cols))}"
                      f"{caption}</td>")
        rows.append(f"<tr>{cells}</tr>")
    rows += ["</table>", "</div>"]
    return "\n".join(parts + rows)
