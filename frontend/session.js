/**
 * The session as the page shows it: start or resume one (its id is kept in localStorage),
 * read it back after every change, and draw its active image and selection. History that
 * was there before a reload is shown again in the chat.
 */

import { ApiError, api } from "./api.js";
import { describeGesture, emptyMarks } from "./marks.js";
import { page, state } from "./state.js";

const SESSION_KEY = "igpt.session";
const images = new Map(); // url -> Promise<HTMLImageElement>

/** A loaded image of this server (cached by URL; artifacts never change). */
export function loadImage(url) {
  if (!images.has(url)) {
    const loading = new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => {
        images.delete(url);
        reject(new ApiError(0, "image_load", `could not load ${url}`));
      };
      img.src = url;
    });
    images.set(url, loading);
  }
  return images.get(url);
}

/** Open the stored session, or a new one (`fresh`, or when the stored one is gone). */
export async function startSession(fresh = false) {
  let id = fresh ? null : localStorage.getItem(SESSION_KEY);
  let data = null;
  if (id) {
    try {
      data = await api.session(id);
    } catch (err) {
      if (!(err instanceof ApiError && (err.status === 404 || err.status === 403))) throw err;
      id = null;
    }
  }
  if (!id) {
    id = (await api.createSession()).id;
    localStorage.setItem(SESSION_KEY, id);
    data = await api.session(id);
  }
  state.session = id;
  state.shown = { image: null, mask: null };
  state.marks = emptyMarks();
  state.components.clear();
  page.log.clear();
  replayMessages(data.messages || []);
  await readUndoState();
  await applySession(data);
}

export async function refresh() {
  const [data] = await Promise.all([api.session(state.session), readUndoState()]);
  await applySession(data);
}

/** Whether the server's history can go back or forward now (GET /history answers it). */
export async function readUndoState() {
  try {
    const history = await api.history(state.session, 0, 1);
    state.canUndo = history.can_undo;
    state.canRedo = history.can_redo;
  } catch {
    state.canUndo = state.canRedo = null; // unknown: the buttons stay on, the server says no
  }
}

/** Show a session JSON: its active image, its selection (a mask of that image), its images. */
export async function applySession(data) {
  state.artifacts = data.artifacts;
  const byPath = new Map(data.artifacts.map((a) => [a.path, a]));
  const image = data.active_image ? byPath.get(data.active_image) || null : null;
  const mask = data.active_mask ? byPath.get(data.active_mask) || null : null;
  const imageChanged = (image && image.path) !== state.shown.image;
  state.image = image;
  state.mask = mask && image && mask.parent === image.path ? mask : null;
  if (imageChanged) {
    state.marks = emptyMarks();
    state.compare = null;
    page.stage.setCompare(null);
    if (image) page.stage.setImage(await loadImage(image.url), { keepView: state.shown.image !== null });
    else page.stage.clearImage();
    state.shown = { image: image ? image.path : null, mask: null };
  }
  const maskPath = state.mask ? state.mask.path : null;
  if (maskPath !== state.shown.mask) {
    page.stage.setMask(state.mask ? await loadImage(state.mask.url) : null);
    state.shown.mask = maskPath;
  }
  document.getElementById("stage").classList.toggle("has-image", Boolean(image));
  page.strip.render(state.artifacts, image ? image.path : null);
  page.updateUi();
}

/** Show a session's history again (after a reload), as the live page showed it. */
function replayMessages(messages) {
  const log = page.log;
  for (const m of messages) {
    const data = m.data || {};
    if (m.role === "user") log.user(m.content, data.gesture ? `with ${describeGesture(data.gesture)}` : "");
    else if (m.role === "assistant") log.assistant(m.content);
    else if (m.role === "tool" && data.intent) {
      // a gesture: selections and sketch strokes show on the image, not in the chat
      if (data.intent === "ocr") log.note("Text (OCR)", m.content);
      else if (data.intent === "move") log.note("Move", m.content);
    } else if (m.role === "tool" && data.tool) {
      log.step({ tool: data.tool, args: data.args, observation: data.observation || m.content, recovered: data.recovered || [], chosen_by: data.chosen_by });
    }
  }
}
