/**
 * The server's REST API as seen from the page (see /docs). Every failure becomes an
 * ApiError carrying the server's own words: `{"error": {"code", "message", "detail"}}`.
 *
 * Authentication: when the server asks for API keys (`GET /api/health` says `auth: "keys"`),
 * every request carries `Authorization: Bearer <key>` (see auth.js). A 401 whose code is
 * `auth_required` or `auth_invalid` asks the person for a key (the `onAuth` hook) and the
 * request is sent once more with the new key.
 */

import { readEvents } from "./sse.js";

export class ApiError extends Error {
  constructor(status, code, message, detail = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

const AUTH_CODES = new Set(["auth_required", "auth_invalid"]);

/** How requests authenticate: `key()` gives the current key or null, `onAuth(error)` asks for a new one. */
export const auth = {
  key: () => null,
  /** Resolves true when a new key was given (the request is retried), false otherwise. */
  onAuth: async () => false,
};

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON: fall through */
  }
  const error = body && body.error;
  if (error && error.message) return new ApiError(response.status, error.code || "error", error.message, error.detail);
  return new ApiError(response.status, "http_error", `${response.status} ${response.statusText} from ${response.url}`);
}

function headers(extra = {}) {
  const key = auth.key();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

/** fetch() with the key; asks for a key and retries once on an auth 401. Returns a Response that is ok. */
async function send(path, init, retried = false) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: headers(init.headers) });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", `the server did not answer (${err.message}); is it still running?`);
  }
  if (response.ok) return response;
  const error = await errorOf(response);
  if (response.status === 401 && AUTH_CODES.has(error.code) && !retried && (await auth.onAuth(error))) {
    return send(path, init, true);
  }
  throw error;
}

async function request(method, path, { json, form, signal } = {}) {
  const init = { method, signal, headers: {} };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const response = await send(path, init);
  if (response.status === 204) return null;
  return response.json();
}

const enc = encodeURIComponent;
const sessionPath = (id) => `/api/sessions/${enc(id)}`;

export const api = {
  health: () => request("GET", "/api/health"),
  tools: () => request("GET", "/api/tools"),
  createSession: () => request("POST", "/api/sessions"),
  session: (id) => request("GET", sessionPath(id)),

  /** Upload a File/Blob; `extra` holds form fields such as {kind: "mask", parent: path}. */
  upload(id, file, filename, extra = {}) {
    const form = new FormData();
    form.append("file", file, filename || file.name || "upload");
    for (const [key, value] of Object.entries(extra)) form.append(key, value);
    return request("POST", `${sessionPath(id)}/files`, { form });
  },

  /** The perception unit without the LLM: intent select | ocr | move | sketch. */
  gesture: (id, body) => request("POST", `${sessionPath(id)}/gesture`, { json: body }),

  /** Make `image` the active image and `mask` (a mask of it, or null) the active selection. */
  setActive: (id, image, mask) => request("PUT", `${sessionPath(id)}/active`, { json: { image, mask } }),

  /** Step the session's history back or forward; both answer the session (as `session()`). */
  undo: (id) => request("POST", `${sessionPath(id)}/undo`),
  redo: (id) => request("POST", `${sessionPath(id)}/redo`),
  history: (id, offset = 0, limit = 50) => request("GET", `${sessionPath(id)}/history?offset=${offset}&limit=${limit}`),

  /** One tool, no LLM: `{tool, backend, text, artifacts, data}`. */
  callTool: (id, name, args) => request("POST", `/api/tools/${enc(name)}`, { json: { session: id, args } }),

  /** One chat turn as events: yields {event, data} (progress, step, token, reply, error, done). */
  async *chatStream(id, body, signal) {
    const response = await send(`${sessionPath(id)}/chat/stream`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal,
    });
    yield* readEvents(response.body);
  },

  /** Transcribe an audio clip: {text, segments}. */
  speech(id, blob, filename) {
    const form = new FormData();
    form.append("file", blob, filename);
    return request("POST", `${sessionPath(id)}/speech`, { form });
  },

  /** The bytes of a URL of this server, with the key (for downloads). */
  async blob(url) {
    return (await send(url, { method: "GET", headers: {} })).blob();
  },
};
