// Checks of what the explorer shows, evaluated in the page by tests/e2e/checks.py. Each returns what it found wrong.
(() => {
  // Rendered and visible (checkVisibility also leaves out the contents of a closed <details>).
  const shown = (el) => {
    const r = el.getBoundingClientRect();
    if (r.width < 1 || r.height < 1 || el.closest("[hidden]")) return false;
    return el.checkVisibility({ opacityProperty: true, visibilityProperty: true });
  };
  const describe = (el) => {
    const text = (el.getAttribute("aria-label") || el.textContent || el.value || "").trim().slice(0, 40);
    const cls = typeof el.className === "string" && el.className.trim() ? `.${el.className.trim().split(/\s+/).join(".")}` : "";
    return `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ""}${cls} "${text}"`;
  };
  const span = (r) => `x ${Math.round(r.left)}–${Math.round(r.right)}`;
  const overlap = (p, q) => [
    Math.min(p.right, q.right) - Math.max(p.left, q.left),
    Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top),
  ];

  // Nothing wider than the main area or the page: no sideways scrolling.
  function overflow() {
    const out = [];
    const main = document.querySelector("main");
    if (main.scrollWidth > main.clientWidth + 1) out.push(`main: ${main.scrollWidth} px of content in ${main.clientWidth} px`);
    const doc = document.documentElement;
    if (doc.scrollWidth > doc.clientWidth + 1) out.push(`page: ${doc.scrollWidth} px of content in ${doc.clientWidth} px`);
    return out;
  }

  // Every control wholly inside the main area's width.
  function clipped(selector) {
    const main = document.querySelector("main").getBoundingClientRect();
    return [...document.querySelectorAll(`main :is(${selector})`)].filter(shown).flatMap((el) => {
      const r = el.getBoundingClientRect();
      return r.left < main.left - 0.5 || r.right > main.right + 0.5 ? [`${describe(el)}: ${span(r)} outside ${span(main)}`] : [];
    });
  }

  // Pictures, charts and colour bars inside the panel or figure that holds them (the grid and filmstrip scroll).
  function spilled() {
    const out = [];
    for (const box of document.querySelectorAll("main :is(.panel-box, .decode-panel, figure, .compare-row, .columns)")) {
      if (!shown(box)) continue;
      const b = box.getBoundingClientRect();
      for (const el of box.querySelectorAll("canvas, svg.chart, img, video")) {
        if (!shown(el) || el.closest(".grid-scroll, .strip-scroll")) continue;
        const r = el.getBoundingClientRect();
        if (r.right > b.right + 1 || r.left < b.left - 1) out.push(`${describe(el)} (${span(r)}) spills out of ${describe(box)} (${span(b)})`);
      }
    }
    return out;
  }

  // No two controls drawn on top of each other (one inside the other, e.g. a label and its field, is fine).
  function overlapping(selector) {
    const items = [...document.querySelectorAll(`main :is(${selector})`)].filter(shown);
    const out = [];
    for (let i = 0; i < items.length; i++) {
      for (let j = i + 1; j < items.length; j++) {
        const [a, b] = [items[i], items[j]];
        if (a.contains(b) || b.contains(a)) continue;
        const [w, h] = overlap(a.getBoundingClientRect(), b.getBoundingClientRect());
        if (w > 2 && h > 2) out.push(`${describe(a)} overlaps ${describe(b)} (${Math.round(w)}×${Math.round(h)} px)`);
      }
    }
    return out;
  }

  // In every SVG chart: no two texts overlap, and no label or legend text lies over a curve or a dot.
  function chartText() {
    const out = [];
    for (const svg of document.querySelectorAll("main svg.chart")) {
      if (!shown(svg)) continue;
      const texts = [...svg.querySelectorAll("text")].filter((t) => t.textContent.trim() && shown(t));
      const boxes = texts.map((t) => t.getBoundingClientRect());
      for (let i = 0; i < texts.length; i++) {
        for (let j = i + 1; j < texts.length; j++) {
          const [w, h] = overlap(boxes[i], boxes[j]);
          if (w > 1 && h > 1) out.push(`#${svg.id}: "${texts[i].textContent}" overlaps "${texts[j].textContent}"`);
        }
      }
      const labels = texts.filter((t) => t.matches(".note, .legend-text, .label"));
      const under = (x, y) => labels.find((t) => {
        const r = t.getBoundingClientRect();
        return x > r.left + 1 && x < r.right - 1 && y > r.top + 1 && y < r.bottom - 1;
      });
      for (const path of svg.querySelectorAll("path.series")) {
        const ctm = path.getScreenCTM();
        for (let l = 0; l <= path.getTotalLength(); l += 1.5) {
          const at = path.getPointAtLength(l);
          const p = new DOMPoint(at.x, at.y).matrixTransform(ctm);
          const hit = under(p.x, p.y);
          if (hit) {
            out.push(`#${svg.id}: "${hit.textContent}" is drawn over the curve ${path.dataset.series}`);
            break;
          }
        }
      }
      for (const dot of svg.querySelectorAll("circle")) {
        const r = dot.getBoundingClientRect();
        const hit = under(r.left + r.width / 2, r.top + r.height / 2);
        if (hit) out.push(`#${svg.id}: "${hit.textContent}" covers a dot of ${dot.parentElement.dataset.series}`);
      }
    }
    return [...new Set(out)];
  }

  return {
    all: (selector) => [...overflow(), ...clipped(selector), ...spilled(), ...overlapping(selector), ...chartText()],
  };
})()
