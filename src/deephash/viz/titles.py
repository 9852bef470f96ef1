"""Titles that fit their figure: a long title (a method, its data, what is plotted) is
broken at spaces into lines no wider than the figure, instead of running off both edges
of the PNG (report.html showed the PR curves' titles clipped)."""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties


def fitted(fig: Figure, text: str, fontsize: float, fraction: float = 0.92) -> str:
    """``text`` with line breaks at spaces so that each line, at ``fontsize`` points, is at
    most ``fraction`` of ``fig``'s width (a single word wider than that keeps its line)."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    font = FontProperties(size=fontsize)
    limit = fig.bbox.width * fraction

    def width(line: str) -> float:
        return float(renderer.get_text_width_height_descent(line, font, ismath=False)[0])

    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            candidate = f"{current} {word}" if current else word
            if current and width(candidate) > limit:
                lines.append(current)
                current = word
            else:
                current = candidate
        lines.append(current)
    return "\n".join(lines)
