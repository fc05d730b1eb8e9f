// The asset cache: each artifact fetched once, at most `concurrency` at a time, on-screen first.
import assert from "node:assert/strict";
import { test } from "node:test";

import { AssetCache } from "../assets.js";

/** Fetchers whose requests the test resolves by hand, in any order. */
function manualFetchers() {
  const pending = [];
  const fetch = (url) => new Promise((resolve, reject) => pending.push({ url, resolve, reject }));
  return { pending, fetchers: { bitmap: fetch, array: fetch } };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

test("fetches each path once, within the concurrency limit, urgent requests first", async () => {
  const { pending, fetchers } = manualFetchers();
  const cache = new AssetCache("job1", { concurrency: 2, fetchers });
  const loaded = [];
  cache.subscribe((path) => loaded.push(path));
  for (const p of ["a.png", "b.png", "c.png", "d.png"]) cache.want(p, "bitmap");
  cache.want("a.png", "bitmap");
  cache.want("d.png", "bitmap", true); // now on screen
  assert.deepEqual(pending.map((r) => r.url), ["/api/jobs/job1/artifacts/a.png", "/api/jobs/job1/artifacts/b.png"]);
  pending[1].resolve("B");
  await tick();
  assert.equal(cache.get("b.png"), "B");
  assert.equal(pending[2].url, "/api/jobs/job1/artifacts/d.png", "the urgent one goes next");
  pending[0].resolve("A");
  pending[2].resolve("D");
  await tick();
  pending[3].resolve("C");
  await tick();
  assert.deepEqual(loaded, ["b.png", "a.png", "d.png", "c.png"]);
  assert.ok(cache.idle);
  cache.want("a.png", "bitmap");
  assert.equal(pending.length, 4, "a loaded artifact is never fetched again");
});

test("a failed fetch is remembered and does not block the queue", async () => {
  const { pending, fetchers } = manualFetchers();
  const cache = new AssetCache("job2", { concurrency: 1, fetchers });
  cache.want("x.npy", "array");
  cache.want("y.npy", "array");
  pending[0].reject(new Error("404"));
  await tick();
  assert.ok(cache.failed.has("x.npy"));
  assert.equal(pending[1].url, "/api/jobs/job2/artifacts/y.npy");
  cache.want("x.npy", "array");
  assert.equal(pending.length, 2);
});

test("arrays past the byte budget drop the least recently used; a dropped one is fetched again", async () => {
  const { pending, fetchers } = manualFetchers();
  const cache = new AssetCache("job3", { concurrency: 1, arrayBudget: 250, fetchers });
  const array = (bytes) => ({ shape: [bytes / 4], data: new Float32Array(bytes / 4) });
  const kinds = [];
  cache.subscribe((path, value, kind) => kinds.push(kind));
  for (const p of ["s0.npy", "s1.npy"]) {
    cache.want(p, "array");
    pending.at(-1).resolve(array(100));
    await tick();
  }
  assert.equal(cache.arrayBytes, 200);
  assert.ok(cache.get("s0.npy"), "s0 is now the most recently used");
  cache.want("s2.npy", "array");
  pending.at(-1).resolve(array(100));
  await tick();
  assert.equal(cache.get("s1.npy"), null, "the least recently used array went");
  assert.ok(cache.get("s0.npy") && cache.get("s2.npy"));
  assert.equal(cache.arrayBytes, 200);
  assert.equal(cache.evictions, 1);
  cache.want("big.npy", "array");
  pending.at(-1).resolve(array(400));
  await tick();
  assert.deepEqual([...cache.arrays.keys()], ["big.npy"], "one array over the budget is still held, alone");
  cache.want("png.png", "bitmap");
  pending.at(-1).resolve({ width: 1 });
  await tick();
  assert.ok(cache.get("png.png") && cache.get("big.npy"), "bitmaps are not counted against the budget");
  cache.want("s1.npy", "array");
  assert.equal(pending.at(-1).url, "/api/jobs/job3/artifacts/s1.npy", "asked again, a dropped array is refetched");
  assert.deepEqual(kinds, ["array", "array", "array", "array", "bitmap"]);
});
