// NumPy .npy parsing (format 1.0–3.0): magic, a Python-literal header dict, then raw data.
// The API serves x̂₀, layer norms, convergence and difference maps in this format.

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

let halfTable = null;

/** One IEEE 754 half-precision bit pattern (0..65535) as a JS number. */
export function halfToFloat(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero and subnormals
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** float16 words → Float32Array through a 64K lookup table (difference maps hold millions). */
export function halvesToFloat32(words) {
  if (halfTable === null) {
    halfTable = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) halfTable[i] = halfToFloat(i);
  }
  const out = new Float32Array(words.length);
  for (let i = 0; i < words.length; i++) out[i] = halfTable[words[i]];
  return out;
}

/** Parse the header dict, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (1, 8, 5), }. */
export function parseHeader(text) {
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(text);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) throw new Error(`npy: unreadable header ${JSON.stringify(text)}`);
  const dims = shape[1]
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map((s) => Number.parseInt(s, 10));
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) throw new Error(`npy: bad shape (${shape[1]})`);
  return { descr: descr[1], fortranOrder: fortran[1] === "True", shape: dims };
}

const TYPES = {
  f2: { bytes: 2, array: Uint16Array, getter: "getUint16" },
  f4: { bytes: 4, array: Float32Array, getter: "getFloat32" },
  f8: { bytes: 8, array: Float64Array, getter: "getFloat64" },
  i1: { bytes: 1, array: Int8Array, getter: "getInt8" },
  u1: { bytes: 1, array: Uint8Array, getter: "getUint8" },
  b1: { bytes: 1, array: Uint8Array, getter: "getUint8" },
  i2: { bytes: 2, array: Int16Array, getter: "getInt16" },
  u2: { bytes: 2, array: Uint16Array, getter: "getUint16" },
  i4: { bytes: 4, array: Int32Array, getter: "getInt32" },
  u4: { bytes: 4, array: Uint32Array, getter: "getUint32" },
  i8: { bytes: 8, array: Float64Array, getter: "getBigInt64" },
  u8: { bytes: 8, array: Float64Array, getter: "getBigUint64" },
};

/**
 * Parse a .npy file. Returns {dtype, shape, data} where data is a Float32Array for float16 and
 * float32, Float64Array for float64 and 64-bit integers, else the matching typed array.
 */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) throw new Error("npy: not a .npy file");
  const major = bytes[6];
  const view = new DataView(buffer);
  let headerLength;
  let start;
  if (major === 1) {
    headerLength = view.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    headerLength = view.getUint32(8, true);
    start = 12;
  } else {
    throw new Error(`npy: unsupported format version ${major}`);
  }
  const header = parseHeader(new TextDecoder("latin1").decode(bytes.subarray(start, start + headerLength)));
  if (header.fortranOrder) throw new Error("npy: Fortran-ordered arrays are not supported");
  const order = header.descr[0];
  const kind = header.descr.slice(1);
  const type = TYPES[kind];
  if (!type || !"<>|=".includes(order)) throw new Error(`npy: unsupported dtype ${header.descr}`);
  const count = header.shape.reduce((a, b) => a * b, 1);
  const offset = start + headerLength;
  if (bytes.length < offset + count * type.bytes) throw new Error("npy: file is shorter than its shape says");
  const bigEndian = order === ">";
  let data;
  if (!bigEndian && kind !== "i8" && kind !== "u8") {
    // Copy: the data offset need not be aligned to the element size for a typed-array view.
    data = new type.array(buffer.slice(offset, offset + count * type.bytes));
  } else {
    data = new type.array(count);
    for (let i = 0; i < count; i++) data[i] = Number(view[type.getter](offset + i * type.bytes, !bigEndian));
  }
  if (kind === "f2") data = halvesToFloat32(data);
  return { dtype: header.descr, shape: header.shape, data };
}

/** Row-major strides (in elements) of a shape. */
export function strides(shape) {
  const out = new Array(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    out[i] = acc;
    acc *= shape[i];
  }
  return out;
}

/**
 * The trailing block an index prefix selects, as a view (no copy): for shape (M, L, F, H, W)
 * and prefix [m, l, f] this is the (H, W) plane, returned as {shape: [H, W], data}.
 */
export function subarray(array, prefix) {
  const st = strides(array.shape);
  let offset = 0;
  prefix.forEach((index, axis) => {
    if (index < 0 || index >= array.shape[axis]) {
      throw new RangeError(`index ${index} is out of range for axis ${axis} of size ${array.shape[axis]}`);
    }
    offset += index * st[axis];
  });
  const shape = array.shape.slice(prefix.length);
  const size = shape.reduce((a, b) => a * b, 1);
  return { shape, data: array.data.subarray(offset, offset + size) };
}
