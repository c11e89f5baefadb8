/**
 * The canvas page: wires the stage, the toolbar, the chat, the voice button, the strip and
 * the tools panel to the server. The server's session is the truth: after every change the
 * page reads the session back (active image, active selection, artifacts).
 */

import { ApiError, api } from "./api.js";
import { ChatLog } from "./chat.js";
import { boxGesture, clickGesture, dragGesture, strokeGesture } from "./geometry.js";
import { Stage } from "./stage.js";
import { Strip } from "./strip.js";
import { renderTools } from "./tools-panel.js";
import { VoiceButton } from "./voice.js";

const $ = (id) => document.getElementById(id);
const SESSION_KEY = "igpt.session";

const HINTS = {
  click: "Click the object to select it · Shift or right click excludes a part",
  box: "Drag a box around something · then Select, OCR, or ask",
  brush: "Paint over the object · Shift adds to the selection",
  move: "Drag the selected object to its new place",
  sketch: "Draw strokes for generation · then describe what to make",
  pan: "Drag to pan · wheel or pinch to zoom",
};

const emptyMarks = () => ({ points: [], box: null, strokes: [], sketches: [] });

const state = {
  session: null,
  artifacts: [],
  image: null, // the active image artifact
  mask: null, // the active selection, when it is a mask of the active image
  shown: { image: null, mask: null }, // paths drawn on the stage
  marks: emptyMarks(),
  mode: "click",
  turn: null, // AbortController of the running chat turn
  selectedFrom: null, // {mask, gesture}: the selection made from the current gesture
  busy: 0,
  tools: [],
};
const undoStack = [];

const stage = new Stage($("canvas"));
const log = new ChatLog($("log"), (artifact) => pickImage(artifact));
const strip = new Strip($("strip"), (artifact) => pickImage(artifact));

// expose a small handle for tests and the curious (read-only use)
window.igpt = { stage, state, api };

// ---- session ---------------------------------------------------------------------------

async function startSession(fresh = false) {
  let id = fresh ? null : localStorage.getItem(SESSION_KEY);
  let data = null;
  if (id) {
    try {
      data = await api.session(id);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err;
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
  undoStack.length = 0;
  log.clear();
  replayMessages(data.messages || []);
  await applySession(data);
}

/** Read the session back and show its active image and selection. */
async function refresh() {
  await applySession(await api.session(state.session));
}

async function applySession(data) {
  state.artifacts = data.artifacts;
  const byPath = new Map(data.artifacts.map((a) => [a.path, a]));
  const image = data.active_image ? byPath.get(data.active_image) || null : null;
  const mask = data.active_mask ? byPath.get(data.active_mask) || null : null;
  const imageChanged = (image && image.path) !== state.shown.image;
  state.image = image;
  state.mask = mask && image && mask.parent === image.path ? mask : null;
  if (imageChanged) {
    state.marks = emptyMarks();
    if (image) {
      const img = await loadImage(image.url);
      stage.setImage(img, { keepView: state.shown.image !== null });
    } else {
      stage.clearImage();
    }
    state.shown = { image: image ? image.path : null, mask: null };
  }
  const maskPath = state.mask ? state.mask.path : null;
  if (maskPath !== state.shown.mask) {
    stage.setMask(state.mask ? await loadImage(state.mask.url) : null);
    state.shown.mask = maskPath;
  }
  $("stage").classList.toggle("has-image", Boolean(image));
  strip.render(state.artifacts, image ? image.path : null);
  updateUi();
}

/** Show a session's history again (after a reload), as the live page showed it. */
function replayMessages(messages) {
  for (const m of messages) {
    const data = m.data || {};
    if (m.role === "user") log.user(m.content, data.gesture ? `with ${describeGesture(data.gesture)}` : "");
    else if (m.role === "assistant") log.assistant(m.content);
    else if (m.role === "tool" && data.intent) {
      // a gesture: selections and sketch strokes show on the image, not in the chat
      if (data.intent === "ocr") log.note("Text (OCR)", m.content);
      else if (data.intent === "move") log.note("Move", m.content);
    } else if (m.role === "tool" && data.tool) {
      log.step({ tool: data.tool, args: data.args, observation: data.observation || m.content, recovered: data.recovered || [] });
    }
  }
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new ApiError(0, "image_load", `could not load ${url}`));
    img.src = url;
  });
}

// ---- undo ------------------------------------------------------------------------------

function snapshot() {
  undoStack.push({
    image: state.image ? state.image.path : null,
    mask: state.mask ? state.mask.path : null,
    marks: structuredClone(state.marks),
  });
  if (undoStack.length > 100) undoStack.shift();
}

async function undo() {
  const last = undoStack.pop();
  if (!last) {
    toast("Nothing to undo");
    return;
  }
  const current = { image: state.image && state.image.path, mask: state.mask && state.mask.path };
  if (last.image && (last.image !== current.image || last.mask !== current.mask)) {
    await busy("Undoing…", async () => {
      await api.setActive(state.session, last.image, last.mask);
      await refresh();
    });
  }
  state.marks = last.marks;
  updateUi();
}

async function clearAll() {
  if (!hasMarks() && !state.mask) return;
  snapshot();
  state.marks = emptyMarks();
  if (state.mask) {
    await busy("Clearing…", async () => {
      await api.setActive(state.session, state.image.path, null);
      await refresh();
    });
  }
  updateUi();
}

// ---- opening images --------------------------------------------------------------------

async function openFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    toast(`${file.name} is not an image (${file.type})`, true);
    return;
  }
  snapshot();
  await busy(`Opening ${file.name || "image"}…`, async () => {
    await api.upload(state.session, file, file.name || "pasted.png");
    await refresh();
    stage.fit();
  });
}

async function pickImage(artifact) {
  if (artifact.kind !== "image") return;
  if (state.image && artifact.path === state.image.path) return;
  snapshot();
  await busy("Switching image…", async () => {
    await api.setActive(state.session, artifact.path, null);
    await refresh();
  });
}

// ---- gestures --------------------------------------------------------------------------

/** The current pointing gesture, sent with a chat message and used by Select and OCR. */
function currentGesture() {
  const m = state.marks;
  if (m.points.length) return clickGesture(m.points);
  if (m.box) return m.box;
  if (m.strokes.length) return m.strokes[m.strokes.length - 1];
  if (m.sketches.length) return m.sketches[m.sketches.length - 1];
  return null;
}

/**
 * The gesture to send with a chat message: none when it already became the visible selection
 * (the selection is the referent: the server would only segment the same thing again).
 */
function chatGesture() {
  const gesture = currentGesture();
  const from = state.selectedFrom;
  const selected = from && state.mask && from.mask === state.mask.path && from.gesture === JSON.stringify(gesture);
  return selected ? null : gesture;
}

/** The pointing gesture for Select and OCR: clicks, a box or a brush stroke (not sketches). */
function pointingGesture() {
  const m = state.marks;
  if (m.points.length) return clickGesture(m.points);
  if (m.box) return m.box;
  if (m.strokes.length) return m.strokes[m.strokes.length - 1];
  return null;
}

function hasMarks() {
  const m = state.marks;
  return m.points.length + m.strokes.length + m.sketches.length > 0 || m.box !== null;
}

function describeGesture(g) {
  if (!g) return "";
  if (g.type === "click") {
    const inc = g.points.filter((p) => p.label === 1).length;
    const exc = g.points.length - inc;
    return `click · ${inc} point${inc === 1 ? "" : "s"}${exc ? ` − ${exc}` : ""}`;
  }
  if (g.type === "box") return `box ${Math.round(g.x1 - g.x0)}×${Math.round(g.y1 - g.y0)}`;
  if (g.type === "stroke") return `stroke · ${g.points.length} points`;
  return g.type;
}

let selectRunning = null;
let selectPending = null;

/** Select with `gesture`; clicks in quick succession collapse into the latest one. */
function select(gesture, add = false) {
  selectPending = { gesture, add };
  if (!selectRunning) selectRunning = drainSelect();
  return selectRunning;
}

async function drainSelect() {
  try {
    while (selectPending) {
      const { gesture, add } = selectPending;
      selectPending = null;
      await busy("Selecting…", async () => {
        await api.gesture(state.session, { gesture, intent: "select", image: state.image.path, add });
        await refresh();
        state.selectedFrom = state.mask ? { mask: state.mask.path, gesture: JSON.stringify(gesture) } : null;
        updateUi();
      });
    }
  } finally {
    selectRunning = null;
  }
}

function needImage() {
  if (state.image) return true;
  toast("Open an image first");
  return false;
}

stage.addEventListener("point", (e) => {
  if (!needImage()) return;
  snapshot();
  const m = state.marks;
  state.marks = { ...emptyMarks(), sketches: m.sketches, points: [...m.points, e.detail] };
  updateUi();
  const gesture = clickGesture(state.marks.points);
  if (gesture && autoSelect()) select(gesture);
  else if (!gesture) toast("Add an include point (left click) first; Shift or right click marks what to leave out");
});

stage.addEventListener("box", (e) => {
  const { width, height } = stage.size;
  const box = boxGesture(e.detail.p0, e.detail.p1, width, height);
  if (!box) return;
  snapshot();
  state.marks = { ...emptyMarks(), sketches: state.marks.sketches, box };
  updateUi();
  if (autoSelect()) select(box, e.detail.add);
});

stage.addEventListener("stroke", (e) => {
  const stroke = strokeGesture(e.detail.points, e.detail.width);
  if (!stroke) return;
  snapshot();
  const keep = e.detail.add ? state.marks.strokes : [];
  state.marks = { ...emptyMarks(), sketches: state.marks.sketches, strokes: [...keep, stroke] };
  updateUi();
  if (autoSelect()) select(stroke, Boolean(e.detail.add) && state.mask !== null);
});

stage.addEventListener("sketch", async (e) => {
  const stroke = strokeGesture(e.detail.points, e.detail.width);
  if (!stroke) return;
  snapshot();
  state.marks = { ...state.marks, sketches: [...state.marks.sketches, stroke] };
  updateUi();
  await busy("Saving sketch…", async () => {
    await api.gesture(state.session, { gesture: stroke, intent: "sketch", image: state.image.path, add: state.marks.sketches.length > 1 });
    await refresh();
  });
});

stage.addEventListener("drag", async (e) => {
  // the server moves the selection when the drag starts on it, else the object under the start
  snapshot();
  const drag = dragGesture(e.detail.start, e.detail.end);
  await busy("Moving the object…", async () => {
    const out = await api.gesture(state.session, { gesture: drag, intent: "move", image: state.image.path, add: false });
    await refresh();
    if (out.text) log.note("Move", out.text, out.artifacts);
  });
});

stage.addEventListener("outside", () => toast("That is outside the image"));

stage.addEventListener("hover", (e) => {
  const d = e.detail;
  $("coords").textContent = d && d.inside ? `x ${d.x.toFixed(1)}  y ${d.y.toFixed(1)}` : "";
});

stage.addEventListener("view", (e) => {
  $("zoom-level").textContent = `${Math.round(e.detail.scale * 100)}%`;
});

async function selectButton() {
  const gesture = pointingGesture();
  if (!gesture || !needImage()) return;
  await select(gesture, false);
}

async function ocrButton() {
  const gesture = pointingGesture();
  if (!gesture || !needImage()) return;
  await busy("Reading text…", async () => {
    const out = await api.gesture(state.session, { gesture, intent: "ocr", image: state.image.path, add: false });
    const text = (out.text || "").trim();
    log.note("Text (OCR)", text || "No text found under the gesture.");
    await refresh();
  });
}

function autoSelect() {
  return $("auto-select").checked;
}

// ---- chat ------------------------------------------------------------------------------

async function send(text, { spoken = false } = {}) {
  const message = text.trim();
  if (!message || state.turn) return;
  const gesture = chatGesture();
  const body = { message };
  if (gesture && state.image) body.gesture = gesture;
  const pointing = [gesture ? describeGesture(gesture) : null, state.mask ? "selection" : null].filter(Boolean);
  const context = [spoken ? "spoken" : null, pointing.length ? `with ${pointing.join(" + ")}` : null].filter(Boolean);
  log.user(message, context.join(" · "));
  $("input").value = "";
  autosize();
  const controller = new AbortController();
  state.turn = controller;
  updateUi();
  const working = log.working("Thinking…");
  const started = performance.now();
  const tick = setInterval(() => {
    $("busy-text").textContent = `${working.label || "Working"} · ${Math.round((performance.now() - started) / 1000)} s`;
  }, 500);
  setBusy(+1, "Working…");
  try {
    await runTurn(state.session, body, controller.signal, working);
  } catch (err) {
    if (err.name !== "AbortError") log.error(err, "The turn failed");
  } finally {
    clearInterval(tick);
    working.remove();
    setBusy(-1);
    state.turn = null;
    updateUi();
  }
  try {
    await refresh(); // a new image replaces the view (same size: same zoom, to compare)
  } catch (err) {
    log.error(err);
  }
}

/** Run one turn, streaming when the server can; renders steps, tokens, the reply and errors. */
async function runTurn(session, body, signal, working) {
  let bubble = null;
  let streamed = "";
  let final = null;
  const onStep = (step) => {
    log.step(step);
    working.label = `Ran ${step.tool} · thinking`;
    working.set(`${working.label}…`);
  };
  try {
    for await (const { event, data } of api.chatStream(session, body, signal)) {
      if (event === "step") onStep(data);
      else if (event === "token") {
        streamed += typeof data === "string" ? data : data.text || data.token || "";
        if (!bubble) bubble = log.assistant("");
        bubble.firstChild ? (bubble.firstChild.textContent = streamed) : bubble.append(streamed);
      } else if (event === "reply" || (event === "done" && data && data.reply !== undefined && !final)) {
        final = normalizeReply(data);
      } else if (event === "error") {
        const error = (data && data.error) || data || {};
        log.error({ code: error.code, message: error.message || String(data) }, "The server could not finish this turn");
      }
    }
  } catch (err) {
    if (!(err instanceof ApiError && (err.status === 404 || err.status === 405) && !bubble && !final)) throw err;
    // no streaming route on this server: one plain request
    final = normalizeReply(await api.chat(session, body, signal));
    for (const step of final.steps) onStep(step);
  }
  if (final) {
    if (bubble) bubble.remove();
    log.assistant(final.reply || streamed, final.artifacts);
  }
  return final;
}

function normalizeReply(data) {
  if (typeof data === "string") return { reply: data, artifacts: [], steps: [] };
  const body = data.chat || data;
  return { reply: body.reply ?? body.text ?? "", artifacts: body.artifacts || [], steps: body.steps || [] };
}

// ---- voice -----------------------------------------------------------------------------

new VoiceButton($("mic-btn"), {
  onStart() {
    $("input").placeholder = "Listening… release or click to send";
  },
  onTick(seconds) {
    $("input").placeholder = `Listening… ${seconds.toFixed(1)} s`;
  },
  async onClip(blob, filename) {
    $("input").placeholder = "Transcribing…";
    try {
      const result = await busy("Transcribing…", () => api.speech(state.session, blob, filename));
      const text = ((result && result.text) || "").trim();
      if (!text) {
        toast("No speech was heard in that clip; try again closer to the microphone", true);
        return;
      }
      $("input").value = text;
      autosize();
      await send(text, { spoken: true });
    } finally {
      $("input").placeholder = "Say what to do… e.g. remove it";
    }
  },
  onError(message) {
    toast(message, true);
  },
});

// ---- tools panel -----------------------------------------------------------------------

async function loadTools() {
  try {
    state.tools = await api.tools();
  } catch (err) {
    $("tools-count").textContent = "?";
    toast(`Could not list the tools: ${err.message}`, true);
    return;
  }
  const on = state.tools.filter((t) => t.available).length;
  $("tools-count").textContent = `${on}/${state.tools.length}`;
  $("tools-count").classList.toggle("ok", on > 0);
  $("tools-summary").textContent =
    `${on} of ${state.tools.length} tools work on this server. The others need a model or a setting; each one says what.`;
  renderTools($("tool-list"), state.tools);
}

// ---- UI state --------------------------------------------------------------------------

function setExclude(on) {
  stage.exclude = on;
  $("exclude-btn").setAttribute("aria-pressed", String(on));
  if (on && state.mode !== "click") setMode("click");
  updateUi();
}

function showWidth(width) {
  stage.brushWidth = width;
  $("width-out").textContent = String(width);
  $("width-dot").style.setProperty("--w", `${Math.max(3, Math.min(22, width / 3))}px`);
}

function setMode(mode) {
  state.mode = mode;
  $("width-group").dataset.mode = mode;
  stage.setMode(mode);
  for (const b of document.querySelectorAll(".btn.mode")) b.setAttribute("aria-checked", String(b.dataset.mode === mode));
  $("width-group").hidden = !(mode === "brush" || mode === "sketch");
  updateUi();
}

function updateUi() {
  stage.setMarks(state.marks);
  const gesture = currentGesture();
  const pointing = pointingGesture();
  const image = Boolean(state.image);
  const working = state.busy > 0 || state.turn !== null;
  $("select-btn").disabled = !image || !pointing;
  $("ocr-btn").disabled = !image || !pointing;
  const autoOn = autoSelect();
  $("select-btn").classList.toggle("ready", Boolean(pointing) && !autoOn && !working);
  $("ocr-btn").classList.toggle("ready", Boolean(pointing && state.marks.box) && !working);
  $("undo-btn").disabled = undoStack.length === 0;
  $("clear-btn").disabled = !hasMarks() && !state.mask;
  $("send-btn").disabled = state.turn !== null;
  $("zoom-in").disabled = $("zoom-out").disabled = $("zoom-level").disabled = !image;
  const chips = [];
  const sent = chatGesture();
  if (sent && image) chips.push(describeGesture(sent));
  if (state.mask) chips.push(`selection ${state.mask.path.split("/").pop()}`);
  const ctx = $("context");
  ctx.replaceChildren();
  if (!image) ctx.textContent = "No image yet: open one to point at it.";
  else if (chips.length) {
    ctx.append("sends with:");
    for (const c of chips) {
      const chip = document.createElement("span");
      chip.className = "chip";
      chip.textContent = c;
      ctx.append(chip);
    }
  } else ctx.textContent = `on image ${state.image.path.split("/").pop()}`;
  let hint = image ? HINTS[state.mode] : "";
  if (image && state.mode === "move" && !state.mask) hint = "Drag an object to its new place (or select it first for precision)";
  const touch = matchMedia("(pointer: coarse)").matches;
  if (image && state.mode === "click") {
    if (stage.exclude) hint = `Excluding: ${touch ? "tap" : "click"} the parts that are not the object`;
    else if (state.mask) hint = `Selected · say what to do, or ${touch ? "tap" : "click"} more to refine`;
    else if (touch) hint = "Tap the object to select it · − excludes a part";
  }
  $("hint").textContent = hint;
}

function setBusy(delta, text) {
  state.busy = Math.max(0, state.busy + delta);
  if (text) $("busy-text").textContent = text;
  $("busy").hidden = state.busy === 0;
  $("stage").classList.toggle("is-working", state.busy > 0);
  updateUi();
}

/** Run `fn` with the busy indicator; shows the server's error message when it fails. */
async function busy(text, fn) {
  setBusy(+1, text);
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    setBusy(-1);
  }
}

function showError(err) {
  const message = err instanceof ApiError ? err.message : `${err.name}: ${err.message}`;
  toast(message, true);
  log.error(err instanceof ApiError ? err : { message });
}

function toast(message, isError = false) {
  const box = $("toasts");
  const div = document.createElement("div");
  div.className = isError ? "toast error" : "toast";
  div.textContent = message;
  box.append(div);
  while (box.children.length > 3) box.firstChild.remove();
  setTimeout(() => div.remove(), isError ? 7000 : 3500);
}

function autosize() {
  const input = $("input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 140)}px`;
}

// ---- wiring ----------------------------------------------------------------------------

function bind() {
  $("open-btn").addEventListener("click", () => $("file-input").click());
  $("empty-open").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (e) => {
    openFile(e.target.files[0]);
    e.target.value = "";
  });
  for (const b of document.querySelectorAll(".btn.mode")) b.addEventListener("click", () => setMode(b.dataset.mode));
  $("width").addEventListener("input", (e) => showWidth(Number(e.target.value)));
  $("exclude-btn").addEventListener("click", () => setExclude(!stage.exclude));
  $("undo-btn").addEventListener("click", undo);
  $("clear-btn").addEventListener("click", clearAll);
  $("select-btn").addEventListener("click", selectButton);
  $("ocr-btn").addEventListener("click", ocrButton);
  $("auto-select").addEventListener("change", updateUi);
  $("zoom-in").addEventListener("click", () => stage.zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => stage.zoomBy(0.8));
  $("zoom-level").addEventListener("click", () => (stage.fitted ? stage.actualSize() : stage.fit()));
  $("tools-btn").addEventListener("click", () => $("tools-panel").showModal());
  $("tools-panel").addEventListener("click", (e) => {
    if (e.target === $("tools-panel")) $("tools-panel").close();
  });
  $("new-btn").addEventListener("click", () => startSession(true).catch(showError));
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send($("input").value);
  });
  $("input").addEventListener("input", autosize);
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send($("input").value);
    }
  });
  window.addEventListener("keydown", onKey);
  // drop a file anywhere; paste an image
  let depth = 0;
  window.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    depth++;
    document.body.classList.add("dragging");
  });
  window.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) document.body.classList.remove("dragging");
  });
  window.addEventListener("dragover", (e) => {
    if (hasFiles(e)) e.preventDefault();
  });
  window.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    document.body.classList.remove("dragging");
    const file = [...(e.dataTransfer.files || [])][0];
    if (file) openFile(file);
  });
  window.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) {
      e.preventDefault();
      openFile(file);
    }
  });
}

function hasFiles(e) {
  return e.dataTransfer && [...e.dataTransfer.types].includes("Files");
}

const KEYS = { c: "click", b: "box", p: "brush", m: "move", s: "sketch", h: "pan" };

function onKey(e) {
  const t = e.target;
  if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA")) return;
  if (document.querySelector("dialog[open]")) return; // Escape closes the dialog, nothing else
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") {
    e.preventDefault();
    undo();
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const key = e.key.toLowerCase();
  if (KEYS[key]) setMode(KEYS[key]);
  else if (key === "x") setExclude(!stage.exclude);
  else if (key === "escape") clearAll();
  else if (key === "f") stage.fit();
  else if (key === "+" || key === "=") stage.zoomBy(1.25);
  else if (key === "-") stage.zoomBy(0.8);
  else if (key === "enter" && currentGesture()) $("input").focus();
}

async function main() {
  bind();
  setMode("click");
  showWidth(Number($("width").value));
  loadTools();
  api
    .health()
    .then((h) => ($("status").textContent = `server ${h.version} · ${h.tools_available}/${h.tools_total} tools`))
    .catch((err) => ($("status").textContent = `server unreachable: ${err.message}`));
  try {
    await startSession();
  } catch (err) {
    showError(err);
  }
  document.body.dataset.ready = "1";
}

main();
