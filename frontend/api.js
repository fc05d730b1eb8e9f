// The REST API (docs/api.md): JSON requests, errors as {detail, field}, artifacts as images or
// .npy arrays. With STEPSCOPE_TOKEN set a 401 asks the user for the token once, keeps it in the
// cookie the API accepts (EventSource and <img> cannot send headers) and retries.

import { parseNpy } from "./npy.js";

export const TOKEN_COOKIE = "stepscope_token";

export class ApiError extends Error {
  constructor(status, detail, field = null) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.field = field;
  }
}

let pendingToken = null;
let askForToken = async () => window.prompt("This stepscope needs its access token (STEPSCOPE_TOKEN):");

/** Replace how the token is asked for (the app shows a dialog); `ask` resolves to a token or null. */
export function setTokenPrompt(ask) {
  askForToken = ask;
}

/** A token is sent as a cookie value: refuse characters a cookie cannot carry. */
export function cookieSafe(token) {
  return typeof token === "string" && /^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+$/.test(token);
}

export function storeToken(token) {
  if (!cookieSafe(token)) throw new Error("the token holds characters a cookie cannot carry");
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${TOKEN_COOKIE}=${token}; path=/; SameSite=Strict${secure}`;
}

async function obtainToken() {
  // Several requests may fail with 401 at once: ask the user only once.
  pendingToken ??= Promise.resolve(askForToken()).finally(() => {
    pendingToken = null;
  });
  const token = await pendingToken;
  if (!token) return false;
  storeToken(token.trim());
  return true;
}

async function errorFrom(response) {
  let detail = `${response.status} ${response.statusText}`;
  let field = null;
  try {
    const body = await response.json();
    if (typeof body.detail === "string") detail = body.detail;
    else if (body.detail) detail = JSON.stringify(body.detail);
    field = body.field ?? null;
  } catch {
    // not JSON (a proxy's error page): keep the status line
  }
  return new ApiError(response.status, detail, field);
}

/**
 * fetch() against the API: `json` sends a JSON body, `form` a FormData. Resolves to the Response
 * (status < 400) or throws ApiError. A 401 asks for the token and retries.
 */
export async function request(path, { method = "GET", json, form, signal } = {}) {
  const init = { method, signal, credentials: "same-origin", headers: {} };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (form !== undefined) {
    init.body = form;
  }
  for (let attempt = 0; ; attempt++) {
    const response = await fetch(path, init);
    if (response.status === 401 && attempt < 3 && (await obtainToken())) continue;
    if (!response.ok) throw await errorFrom(response);
    return response;
  }
}

export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

export async function postJSON(path, body) {
  const response = await request(path, { method: "POST", json: body });
  return { status: response.status, body: response.status === 204 ? null : await response.json() };
}

/** URL of one run artifact (run-relative paths hold only plain segments). */
export function artifactUrl(jobId, path) {
  return `/api/jobs/${encodeURIComponent(jobId)}/artifacts/${path}`;
}

export async function fetchBitmap(url, signal) {
  const blob = await (await request(url, { signal })).blob();
  // "none": colours exactly as stored, so a canvas pixel can be compared with the PNG's.
  return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

export async function fetchArray(url, signal) {
  return parseNpy(await (await request(url, { signal })).arrayBuffer());
}

export const jobs = {
  list: (params = "") => getJSON(`/api/jobs${params}`),
  get: (id) => getJSON(`/api/jobs/${encodeURIComponent(id)}`),
  manifest: (id) => getJSON(`/api/jobs/${encodeURIComponent(id)}/manifest`),
  cancel: (id) => postJSON(`/api/jobs/${encodeURIComponent(id)}/cancel`),
  remove: (id) => request(`/api/jobs/${encodeURIComponent(id)}`, { method: "DELETE" }),
  eventsUrl: (id) => `/api/jobs/${encodeURIComponent(id)}/events`,
  decode: (id, trajectory, step) => postJSON(`/api/jobs/${encodeURIComponent(id)}/decodes`, { trajectory, step }),
  decodes: (id) => getJSON(`/api/jobs/${encodeURIComponent(id)}/decodes`),
  exportUrl: (id, file, params = {}) => {
    const query = new URLSearchParams(params).toString();
    return `/api/jobs/${encodeURIComponent(id)}/export/${file}${query ? `?${query}` : ""}`;
  },
};

export const models = () => getJSON("/api/models");

/** The ExperimentSpec's JSON Schema: the submit form builds its intervention choices from it. */
export const specSchema = () => getJSON("/api/schema/spec");

/** The reasoning-task families and one instance of a family (its prompt, canvas and first frame as a data URL). */
export const tasks = {
  list: () => getJSON("/api/tasks"),
  instance: (family, difficulty = 1, seed = 0) =>
    getJSON(`/api/tasks/${encodeURIComponent(family)}?${new URLSearchParams({ difficulty, seed })}`),
};

/**
 * A File holding the bytes of a base64 data URL ("data:image/png;base64,…"), e.g. to put into an
 * <input type=file> through DataTransfer. Throws TypeError for anything else.
 * @param {string} dataUrl
 * @param {string} name the file name
 * @returns {File}
 */
export function dataUrlToFile(dataUrl, name) {
  const match = /^data:([\w.+-]+\/[\w.+-]+);base64,([A-Za-z0-9+/]*={0,2})$/.exec(dataUrl);
  if (!match) throw new TypeError("not a base64 data URL");
  const bytes = Uint8Array.from(atob(match[2]), (c) => c.charCodeAt(0));
  return new File([bytes], name, { type: match[1] });
}
