"""The explorer from the keyboard and through a screen reader's eyes: a skip link first, the jobs list one tab stop
whatever its length, every control reached by Tab and named (the accessibility tree Chromium builds), tabs that say
which is selected, radio groups picked with the arrows, and the step keys back after a dropdown's Esc."""

from __future__ import annotations

import pytest

from tests.e2e.helpers import LONG_SPEC, open_job, screenshot

pytestmark = pytest.mark.browser

# Roles a person acts on: each needs a name a screen reader can say.
NAMED_ROLES = {"button", "link", "combobox", "slider", "spinbutton", "textbox", "checkbox", "radio", "tab", "img"}
# One description per focused element: enough to tell the controls apart.
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  return {id: el.id, tag: el.tagName.toLowerCase(), type: el.type ?? null, name: el.name ?? null,
          inMain: Boolean(el.closest('main')), inJobs: Boolean(el.closest('#jobs')), job: el.dataset?.job ?? null,
          key: el.id || `${el.tagName}:${el.name ?? ''}:${el.textContent.trim().slice(0, 30)}`};
}"""
# Every control in the main area a keyboard must reach (the checked radio of each group stands for its group).
REACHABLE = """() => [...document.querySelectorAll(
    'main :is(button, select, input, a[href], [tabindex]:not([tabindex="-1"]), summary)')]
  .filter((el) => {
    const r = el.getBoundingClientRect();
    if (el.closest('[hidden]') || el.disabled || el.tabIndex < 0) return false;
    if (el.type === 'radio') return el.checked && el.closest('label').checkVisibility();
    // checkVisibility: not in a closed <details> (the export menu's fields are reached once it is opened)
    return r.width > 0 && r.height > 0 && el.checkVisibility({ visibilityProperty: true });
  })
  .map((el) => el.id || `${el.tagName}:${el.name ?? ''}:${el.textContent.trim().slice(0, 30)}`)"""


def tab_through(page, limit: int = 200) -> list[dict]:
    """Press Tab from the top of the page until the focus comes back round; the focused elements in order."""
    page.evaluate("document.activeElement && document.activeElement.blur()")
    seen: list[dict] = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused is None or (seen and focused["key"] == seen[0]["key"]):
            break
        seen.append(focused)
    return seen


def ax_nodes(page) -> list[dict]:
    """Chromium's accessibility tree of the page, every node."""
    session = page.context.new_cdp_session(page)
    try:
        return session.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        session.detach()


@pytest.fixture(scope="module")
def many_jobs(client):
    """More jobs than fit a screen: the jobs list must still be one tab stop."""
    ids = [client.submit({**LONG_SPEC, "steps": 1, "prompt": f"job {i} of many"})["id"] for i in range(4)]
    for job_id in ids:
        assert client.wait(job_id, timeout=180)["status"] == "finished"
    return ids


def test_a_skip_link_then_few_stops_before_the_explorer(page, service, finished_run, many_jobs):
    open_job(page, service, finished_run.id, "layers")
    page.wait_for_function("() => document.getElementById('heatmap-canvas')?.dataset.src")
    listed = page.locator("#jobs li.job").count()
    assert listed >= len(many_jobs) + 1
    order = tab_through(page)
    # The skip link comes first, visible once focused; Enter takes the focus into the explorer.
    assert order[0]["id"] == "skip-link"
    before_main = [f for f in order[: next(i for i, f in enumerate(order) if f["inMain"])]]
    # Skip link, the brand, the docs link, + New experiment, and the jobs list as ONE stop, however many jobs.
    assert len(before_main) <= 5, before_main
    assert sum(f["inJobs"] for f in before_main) == 1, before_main
    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "skip-link"
    assert page.locator("#skip-link").bounding_box()["y"] >= 0  # on screen while focused
    screenshot(page, "keyboard_skip_link")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("Boolean(document.activeElement.closest('main'))")
    assert page.url.endswith("/layers") or "/layers?" in page.url  # the skip link is not read as a route


def test_the_jobs_list_moves_opens_and_cancels_with_keys(page, service, client, many_jobs):
    # No worker serves tiny-moe here: the job stays queued, and Delete on it cancels it.
    waiting = client.submit({**LONG_SPEC, "model": "tiny-moe", "steps": 2, "prompt": "waits to be cancelled"})
    page.goto(f"{service.url}/#/new")
    page.wait_for_selector(f"#jobs a.job-link[data-job='{waiting['id']}']")
    links = page.locator("#jobs a.job-link")
    assert [links.nth(i).get_attribute("tabindex") for i in range(links.count())].count("0") == 1
    page.locator(f"#jobs a.job-link[data-job='{waiting['id']}']").focus()
    page.keyboard.press("ArrowDown")
    second = page.evaluate("document.activeElement.dataset.job")
    assert second and second != waiting["id"]
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.activeElement.dataset.job") == waiting["id"]
    page.keyboard.press("Delete")
    page.wait_for_selector(f"#jobs li[data-job='{waiting['id']}'][data-status='cancelled']")
    assert client.job(waiting["id"])["status"] == "cancelled"
    # The list was redrawn; the focus stayed on the same job, and Enter opens it.
    assert page.evaluate("document.activeElement.dataset.job") == waiting["id"]
    page.keyboard.press("ArrowDown")
    target = page.evaluate("document.activeElement.dataset.job")
    page.keyboard.press("Enter")
    page.wait_for_selector(f"section.explorer[data-job='{target}']")


@pytest.mark.parametrize("tab", ["trajectory", "layers", "compare"])
def test_every_control_is_reached_by_tab_and_named(page, service, finished_run, tab):
    open_job(page, service, finished_run.id, f"{tab}?right=noise3" if tab == "compare" else tab)
    ready = {
        "trajectory": "document.getElementById('frame-canvas')?.dataset.src",
        "layers": "document.getElementById('heatmap-canvas')?.dataset.src",
        "compare": "document.getElementById('cka-chart')?.dataset.points > 0",
    }[tab]
    page.wait_for_function(f"() => Boolean({ready})")
    # The finished run's stream has ended (its reconnect button goes away): the controls stay as they are now.
    page.wait_for_selector("#stream-state[data-state='ended']", state="attached")
    page.wait_for_selector("#reconnect", state="hidden")
    wanted = set(page.evaluate(REACHABLE))
    reached = {f["key"] for f in tab_through(page, limit=400)}
    assert wanted <= reached, sorted(wanted - reached)
    if tab == "layers":  # both radio groups are stops (their radios were display:none once)
        assert {"INPUT:heat-mode:", "INPUT:heat-scale:"} <= reached, sorted(reached)
    # Chromium's accessibility tree: everything one acts on, and every picture, has a name.
    unnamed = [
        (node["role"]["value"], node.get("properties"))
        for node in ax_nodes(page)
        if not node.get("ignored")
        and node.get("role", {}).get("value") in NAMED_ROLES
        and not (node.get("name", {}).get("value") or "").strip()
    ]
    assert unnamed == [], unnamed
    canvases = page.evaluate(
        """() => [...document.querySelectorAll('main canvas')].filter((c) => !c.closest('[hidden]')
            && c.getAttribute('aria-hidden') !== 'true'
            && !(c.getAttribute('role') === 'img' && (c.getAttribute('aria-label') || '').trim())).map((c) => c.id)"""
    )
    assert canvases == [], f"data canvases without a role and a name: {canvases}"
    # The tabs say which one is selected and which panel each controls.
    tabs = page.eval_on_selector_all(
        "[role=tab]",
        "els => els.map(e => [e.dataset.tab, e.getAttribute('aria-selected'), e.getAttribute('aria-controls')])",
    )
    assert [t for t in tabs if t[1] == "true"] == [[tab, "true", f"panel-{tab}"]]
    assert page.get_attribute(f"#panel-{tab}", "role") == "tabpanel"


def test_radio_groups_take_the_arrows_and_esc_gives_them_back(page, service, finished_run):
    open_job(page, service, finished_run.id, "layers")
    page.wait_for_function("() => document.getElementById('heatmap-canvas')?.dataset.src")
    page.focus("input[name=heat-scale][value=global]")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.getElementById('heatmap-canvas').dataset.scaleMode === 'layer'")
    assert "option group" in page.inner_text("#keys-hint")
    step = page.eval_on_selector(".scrubber", "e => Number(e.dataset.step)")
    page.keyboard.press("Escape")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"() => document.querySelector('.scrubber').dataset.step === '{step - 1}'")
    assert page.get_attribute("#heatmap-canvas", "data-scale-mode") == "layer"  # the arrow stepped, not the radio
    # The colour scale is in the URL, so the view can be shared as it is.
    page.wait_for_function("() => location.hash.includes('scale=layer')")


@pytest.mark.parametrize("opened", [False, True], ids=["focused", "opened"])
def test_after_a_dropdown_and_esc_the_arrows_step_not_the_trajectory(page, service, finished_run, opened):
    open_job(page, service, finished_run.id)
    page.wait_for_function("() => document.getElementById('frame-canvas')?.dataset.src")
    page.focus("#trajectory-select")
    if opened:
        page.keyboard.press("Alt+ArrowDown")  # opens the list
    page.keyboard.press("Escape")
    step = page.eval_on_selector(".scrubber", "e => Number(e.dataset.step)")
    page.keyboard.press("ArrowLeft")
    page.wait_for_function(f"() => document.querySelector('.scrubber').dataset.step === '{step - 1}'")
    assert page.eval_on_selector("#trajectory-select", "s => s.value") == "baseline"
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => document.querySelector('.scrubber').dataset.step === '{step}'")
    assert page.eval_on_selector("#trajectory-select", "s => s.value") == "baseline"
