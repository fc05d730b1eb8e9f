// dataUrlToFile: the submit form turns a task's first frame (a PNG data URL) into an upload.
import assert from "node:assert/strict";
import { test } from "node:test";

import { dataUrlToFile } from "../api.js";

test("a base64 data URL becomes a File with its exact bytes, type and name", async () => {
  const bytes = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 255, 128]);
  const url = `data:image/png;base64,${Buffer.from(bytes).toString("base64")}`;
  const file = dataUrlToFile(url, "maze-1-0.png");
  assert.equal(file.name, "maze-1-0.png");
  assert.equal(file.type, "image/png");
  assert.equal(file.size, bytes.length);
  assert.deepEqual(new Uint8Array(await file.arrayBuffer()), bytes);
});

test("anything but a base64 data URL is refused", () => {
  assert.throws(() => dataUrlToFile("data:image/png,rawtext", "a.png"), TypeError);
  assert.throws(() => dataUrlToFile("https://example.org/a.png", "a.png"), TypeError);
  assert.throws(() => dataUrlToFile("data:image/png;base64,ab$d", "a.png"), TypeError);
});
