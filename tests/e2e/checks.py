"""Checks of what the explorer shows, run in the page (tests/e2e/layout_checks.js): nothing wider than the page,
no control off-screen or clipped, no picture spilling out of its panel, no two controls on top of each other, no
chart text over another text or a curve. `layout_problems` returns what they found (empty when all is well)."""

from __future__ import annotations

from pathlib import Path

LAPTOP = {"width": 1024, "height": 700}
DESKTOP = {"width": 1400, "height": 900}
VIEWPORTS = {"1024x700": LAPTOP, "1400x900": DESKTOP}

CHECKS_JS = (Path(__file__).parent / "layout_checks.js").read_text()
# Controls and readouts that must be wholly visible: buttons, fields, links, tabs and the scrubber's readouts.
CONTROLS = (
    "button, select, input:not([type=radio]), a[href], [role=tab], .kv, .expert, .keys-hint, .frame-info, "
    "#live-badge, .badge, .step-count, .stream-state, .scrub-label, #step-total, #frame-total, label"
)


def layout_problems(page) -> list[str]:
    """Everything the layout checks find on the page as it is now."""
    return page.evaluate(f"(selector) => ({CHECKS_JS}).all(selector)", CONTROLS)
