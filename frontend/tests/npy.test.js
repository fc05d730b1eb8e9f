// .npy parsing against files written by NumPy (fixtures/make_npy.py) and the values NumPy reads.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { halfToFloat, parseHeader, parseNpy, strides, subarray } from "../npy.js";

const fixture = (name) => {
  const bytes = readFileSync(new URL(`./fixtures/${name}.npy`, import.meta.url));
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
};
const expected = JSON.parse(readFileSync(new URL("./fixtures/expected.json", import.meta.url), "utf8"));
const asNumber = (v) => (typeof v === "string" ? Number(v.replace("inf", "Infinity")) : v);

function assertMatches(name, fixtureName = name) {
  const array = parseNpy(fixture(fixtureName));
  const want = expected[name];
  assert.equal(array.dtype, want.dtype);
  assert.deepEqual(array.shape, want.shape);
  assert.equal(array.data.length, want.values.length);
  want.values.forEach((v, i) => {
    const got = array.data[i];
    const w = asNumber(v);
    if (Number.isNaN(w)) assert.ok(Number.isNaN(got), `${name}[${i}] should be NaN, got ${got}`);
    else assert.ok(Object.is(got, w) || Math.abs(got - w) <= Math.abs(w) * 1e-7, `${name}[${i}]: ${got} != ${w}`);
  });
  return array;
}

test("float16 values, including subnormals, infinities, NaN and -0, read as NumPy reads them", () => {
  const array = assertMatches("float16");
  assert.ok(array.data instanceof Float32Array);
  assert.ok(Object.is(array.data[10], -0));
});

test("halfToFloat on bit patterns", () => {
  assert.equal(halfToFloat(0x3c00), 1);
  assert.equal(halfToFloat(0xc000), -2);
  assert.equal(halfToFloat(0x7bff), 65504);
  assert.equal(halfToFloat(0x0001), 2 ** -24);
  assert.equal(halfToFloat(0x7c00), Infinity);
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
});

test("a float16 difference map (steps, F, H, W) and its planes", () => {
  const diff = assertMatches("difference");
  const plane = subarray(diff, [2, 1]);
  assert.deepEqual(plane.shape, [4, 5]);
  const offset = (2 * 2 + 1) * 20;
  const want = expected.difference.values.slice(offset, offset + 20);
  assert.deepEqual([...plane.data], want);
});

test("float32 layer norms (members, layers, F', H', W') and a token plane", () => {
  const norms = assertMatches("norms");
  assert.deepEqual(strides(norms.shape), [48, 16, 8, 4, 1]);
  const plane = subarray(norms, [1, 2, 0]);
  assert.deepEqual(plane.shape, [2, 4]);
  // arange * 0.25: element (1, 2, 0, h, w) is (48 + 32 + 4h + w) * 0.25
  assert.deepEqual([...plane.data], [20, 20.25, 20.5, 20.75, 21, 21.25, 21.5, 21.75]);
  assert.throws(() => subarray(norms, [2]), RangeError);
});

test("big-endian float64, uint8, int64 and 0-d arrays", () => {
  assertMatches("float64_big_endian");
  assertMatches("uint8");
  assertMatches("int64");
  const scalar = assertMatches("scalar");
  assert.deepEqual(scalar.shape, []);
});

test("format version 2.0 (4-byte header length)", () => {
  assertMatches("norms", "version2");
});

test("refuses Fortran order, truncated files and other formats", () => {
  assert.throws(() => parseNpy(fixture("fortran")), /Fortran/);
  const whole = fixture("norms");
  assert.throws(() => parseNpy(whole.slice(0, whole.byteLength - 4)), /shorter/);
  assert.throws(() => parseNpy(new TextEncoder().encode("PK\x03\x04 not an npy").buffer), /not a .npy/);
});

test("header parsing", () => {
  assert.deepEqual(parseHeader("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 8, 5, 4, 4), }"), {
    descr: "<f4",
    fortranOrder: false,
    shape: [1, 8, 5, 4, 4],
  });
  assert.deepEqual(parseHeader("{'descr': '<f2', 'fortran_order': False, 'shape': (7,), }").shape, [7]);
  assert.throws(() => parseHeader("{'descr': '<f4'}"), /unreadable/);
});
