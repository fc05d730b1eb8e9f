// Geometry of a step's preview PNG: all latent frames side by side in one horizontal strip,
// members of a seed ensemble stacked as rows (backend/stepscope/preview.py: frame_strip).

/** Source rectangle of (member, frame) inside a strip of `frames` columns and `members` rows. */
export function frameRect(stripWidth, stripHeight, frames, members, frame, member = 0) {
  const sw = Math.floor(stripWidth / frames);
  const sh = Math.floor(stripHeight / members);
  if (frame < 0 || frame >= frames) throw new RangeError(`frame ${frame} outside 0..${frames - 1}`);
  if (member < 0 || member >= members) throw new RangeError(`member ${member} outside 0..${members - 1}`);
  return { sx: frame * sw, sy: member * sh, sw, sh };
}

/** Draw one frame of a preview strip into ctx at (dx, dy, dw, dh), pixels kept sharp. */
export function drawFrame(ctx, bitmap, frames, members, frame, member, dx, dy, dw, dh) {
  const r = frameRect(bitmap.width, bitmap.height, frames, members, frame, member);
  ctx.imageSmoothingEnabled = false; // latent-resolution previews: show the real pixels
  ctx.drawImage(bitmap, r.sx, r.sy, r.sw, r.sh, dx, dy, dw, dh);
}

/** The largest integer scale at which a w×h frame fits in maxW×maxH (at least 1). */
export function integerScale(w, h, maxW, maxH) {
  return Math.max(1, Math.floor(Math.min(maxW / w, maxH / h)));
}

/**
 * Size a canvas for a w×h source shown as large as fits in box×box at an integer scale (one
 * source pixel = scale×scale pixels, no smoothing). Returns {g, scale, width, height}.
 */
export function pixelCanvas(canvas, w, h, box) {
  const scale = integerScale(w, h, box, box);
  const width = w * scale;
  const height = h * scale;
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
  }
  return { g: canvas.getContext("2d"), scale, width, height };
}

/** Draw a "no data yet" cell. */
export function drawPlaceholder(ctx, x, y, w, h, text = "") {
  ctx.fillStyle = "#161b23";
  ctx.fillRect(x, y, w, h);
  if (text && w > 40) {
    ctx.fillStyle = "#5b6675";
    ctx.font = "12px system-ui, sans-serif";
    ctx.textAlign = "center";
    ctx.fillText(text, x + w / 2, y + h / 2 + 4);
  }
}

/**
 * Cell size of the steps × frames grid: the columns fill `boxWidth` (less the label column) at
 * zoom 1, and `zoom` times that when zoomed (the grid then scrolls). Rows keep the frame's
 * aspect (w/h). Returns {cw, ch} in CSS pixels, cw including a 1 px gap.
 */
export function gridCellSize(boxWidth, labelWidth, frames, aspect, zoom = 1) {
  const fit = Math.floor((boxWidth - labelWidth) / Math.max(1, frames));
  const cw = Math.max(8, Math.floor(fit * zoom));
  const ch = Math.max(4, Math.round((cw - 1) / aspect));
  return { cw, ch };
}
