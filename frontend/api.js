/**
 * The server's REST API as seen from the page (see /docs). Every failure becomes an
 * ApiError carrying the server's own words: `{"error": {"code", "message", "detail"}}`.
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

async function request(method, path, { json, form, signal } = {}) {
  const init = { method, signal, headers: {} };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "network_error", `the server did not answer (${err.message}); is it still running?`);
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  return response.json();
}

const enc = encodeURIComponent;

export const api = {
  health: () => request("GET", "/api/health"),
  tools: () => request("GET", "/api/tools"),
  createSession: () => request("POST", "/api/sessions"),
  session: (id) => request("GET", `/api/sessions/${enc(id)}`),

  /** Upload a File/Blob; `extra` holds form fields such as {kind: "mask", parent: path}. */
  upload(id, file, filename, extra = {}) {
    const form = new FormData();
    form.append("file", file, filename || file.name || "upload");
    for (const [key, value] of Object.entries(extra)) form.append(key, value);
    return request("POST", `/api/sessions/${enc(id)}/files`, { form });
  },

  /** The perception unit without the LLM: intent select | ocr | move | sketch. */
  gesture: (id, body) => request("POST", `/api/sessions/${enc(id)}/gesture`, { json: body }),

  /** Make `image` the active image and `mask` (a mask of it, or null) the active selection. */
  setActive: (id, image, mask) =>
    request("PUT", `/api/sessions/${enc(id)}/active`, { json: { image, mask } }),

  chat: (id, body, signal) => request("POST", `/api/sessions/${enc(id)}/chat`, { json: body, signal }),

  /** One chat turn as events: yields {event, data} (step, token, reply, error, done). */
  async *chatStream(id, body, signal) {
    let response;
    try {
      response = await fetch(`/api/sessions/${enc(id)}/chat/stream`, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
        body: JSON.stringify(body),
        signal,
      });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "network_error", `the server did not answer (${err.message}); is it still running?`);
    }
    if (!response.ok) throw await errorOf(response);
    yield* readEvents(response.body);
  },

  /** Transcribe an audio clip: {text, segments}. */
  speech(id, blob, filename) {
    const form = new FormData();
    form.append("file", blob, filename);
    return request("POST", `/api/sessions/${enc(id)}/speech`, { form });
  },
};
