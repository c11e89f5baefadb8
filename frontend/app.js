/**
 * The canvas page: makes its parts and wires them to each other and to the server.
 *
 *   session.js       the session (start, read back, show)      state.js    shared state
 *   pointing.js      gestures -> selection, OCR, move, sketch   marks.js    the marks (pure)
 *   selection.js     the selection's objects (mask pixels)      geometry.js display <-> image
 *   conversation.js  chat turns with progress and Stop          turn.js     the SSE turn
 *   actions.js       one-step actions (Erase, Cut out, ...)     history.js  undo / redo
 *   exporter.js      the Export menu's downloads                compare.js  before / after
 *   toolbar.js       what the buttons and hints show            keys.js     shortcuts, help
 *   ui.js            toasts, the busy pill                      auth.js     API keys
 *   stage.js, chat.js, strip.js, tools-panel.js, voice.js, video.js, api.js, sse.js
 */

import { ACTIONS, actionForKey, runAction } from "./actions.js";
import { ApiError, api } from "./api.js";
import { setupAuth } from "./auth.js";
import { ChatLog } from "./chat.js";
import { send, stop } from "./conversation.js";
import { holdBefore, releaseBefore, showBefore, toggleCompare } from "./compare.js";
import { exportCutout, exportImage, exportMask } from "./exporter.js";
import { redo, undo } from "./history.js";
import { bindKeys, renderHelp } from "./keys.js";
import { emptyMarks, hasMarks } from "./marks.js";
import { bindPointing, ocrButton, selectButton } from "./pointing.js";
import { applySession, refresh, startSession } from "./session.js";
import { Stage } from "./stage.js";
import { page, state } from "./state.js";
import { Strip } from "./strip.js";
import { buildActions, setAdd, setExclude, setMode, showWidth, updateUi } from "./toolbar.js";
import { renderTools } from "./tools-panel.js";
import { autosize, busyPill, errorMessage, toast } from "./ui.js";
import { VoiceButton } from "./voice.js";
import { attachVideo, isVideo } from "./video.js";

const $ = (id) => document.getElementById(id);

page.stage = new Stage($("canvas"));
page.log = new ChatLog($("log"), (artifact) => pickImage(artifact));
page.strip = new Strip($("strip"), (artifact) => {
  if (isVideo(artifact)) return showVideo(artifact);
  if (videos) videos.player.close(); // back to the canvas
  return pickImage(artifact);
});
page.refresh = refresh;
page.apply = applySession;
page.updateUi = updateUi;
page.busy = busy;

// a small handle for tests and the curious (read-only use)
window.igpt = { stage: page.stage, state, api };

// ---- busy and errors ----------------------------------------------------------------------

/** Run `fn` with the busy pill; shows the server's error message when it fails. */
async function busy(text, fn) {
  state.busy += 1;
  busyPill.show(text);
  $("stage").classList.add("is-working");
  updateUi();
  try {
    return await fn();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    state.busy = Math.max(0, state.busy - 1);
    if (state.busy === 0) {
      busyPill.hide();
      $("stage").classList.remove("is-working");
    }
    updateUi();
  }
}

function showError(err) {
  toast(errorMessage(err), true);
  page.log.error(err instanceof ApiError ? err : { message: errorMessage(err) });
}

// ---- images --------------------------------------------------------------------------------

let videos = null; // the video player (video.js), made when the first video is opened

function videoPlayer() {
  videos ||= attachVideo({ container: $("stage"), api, session: () => state.session, refresh, onError: showError });
  return videos;
}

/** Open a video artifact (a strip thumbnail's click) in the player over the canvas. */
function showVideo(artifact) {
  videoPlayer().show(artifact);
}

async function openFile(file) {
  if (!file) return;
  if (file.type && file.type.startsWith("video/")) {
    const player = videoPlayer();
    await busy(`Uploading ${file.name}…`, () => player.openFile(file));
    return;
  }
  if (file.type && !file.type.startsWith("image/")) {
    toast(`${file.name} is not an image`, true);
    return;
  }
  await busy(`Uploading ${file.name}…`, async () => {
    await api.upload(state.session, file, file.name);
    await refresh();
  });
}

async function pickImage(artifact) {
  if (state.image && artifact.path === state.image.path) return;
  await busy("Switching image…", async () => {
    await api.setActive(state.session, artifact.path, null);
    await refresh();
  });
}

async function clearAll() {
  if (state.turn) {
    stop();
    return;
  }
  if (!hasMarks(state.marks) && !state.mask) return;
  state.marks = emptyMarks();
  state.selectedFrom = null;
  updateUi();
  if (state.mask) {
    await busy("Clearing…", async () => {
      await api.setActive(state.session, state.image.path, null);
      await refresh();
    });
  }
}

// ---- tools ---------------------------------------------------------------------------------

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
  $("tools-summary").textContent = `${on} of ${state.tools.length} tools work on this server. The others need a model or a setting; each one says what.`;
  renderTools($("tool-list"), state.tools);
  updateUi();
}

// ---- wiring ---------------------------------------------------------------------------------

function bindVoice() {
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
        autosize($("input"));
        await send(text, { spoken: true });
      } finally {
        $("input").placeholder = "Say what to do… e.g. remove it";
      }
    },
    onError(message) {
      toast(message, true);
    },
  });
}

function bindFiles() {
  $("open-btn").addEventListener("click", () => $("file-input").click());
  $("empty-open").addEventListener("click", () => $("file-input").click());
  $("file-input").addEventListener("change", (e) => {
    openFile(e.target.files[0]);
    e.target.value = "";
  });
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && [...e.dataTransfer.types].includes("Files");
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
    openFile([...(e.dataTransfer.files || [])][0]);
  });
  window.addEventListener("paste", (e) => {
    const file = [...(e.clipboardData.files || [])].find((f) => f.type.startsWith("image/"));
    if (file) {
      e.preventDefault();
      openFile(file);
    }
  });
}

function bindToolbar() {
  for (const b of document.querySelectorAll(".btn.mode")) b.addEventListener("click", () => setMode(b.dataset.mode));
  $("width").addEventListener("input", (e) => showWidth(Number(e.target.value)));
  $("exclude-btn").addEventListener("click", () => setExclude(!page.stage.exclude));
  $("add-btn").addEventListener("click", () => setAdd(!page.stage.addMode));
  $("undo-btn").addEventListener("click", undo);
  $("redo-btn").addEventListener("click", redo);
  $("clear-btn").addEventListener("click", clearAll);
  $("select-btn").addEventListener("click", selectButton);
  $("ocr-btn").addEventListener("click", ocrButton);
  $("auto-select").addEventListener("change", updateUi);
  $("zoom-in").addEventListener("click", () => page.stage.zoomBy(1.25));
  $("zoom-out").addEventListener("click", () => page.stage.zoomBy(0.8));
  $("zoom-level").addEventListener("click", () => (page.stage.fitted ? page.stage.actualSize() : page.stage.fit()));
  $("export-png").addEventListener("click", () => exportImage("image/png"));
  $("export-jpeg").addEventListener("click", () => exportImage("image/jpeg"));
  $("export-mask").addEventListener("click", exportMask);
  $("export-cutout").addEventListener("click", exportCutout);
  $("compare-btn").addEventListener("click", toggleCompare);
  $("compare-split").addEventListener("input", (e) => state.compare && showBefore(Number(e.target.value) / 100));
  for (const [id, dialog] of [["tools-btn", "tools-panel"], ["help-btn", "help"]]) {
    $(id).addEventListener("click", () => $(dialog).showModal());
    $(dialog).addEventListener("click", (e) => {
      if (e.target === $(dialog)) $(dialog).close();
    });
  }
  $("new-btn").addEventListener("click", () => startSession(true).catch(showError));
  buildActions((action) => runAction(action));
  $("replace-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const prompt = $("replace-prompt").value.trim();
    if (!prompt) return;
    $("replace-form").hidden = true;
    $("replace-prompt").value = "";
    runAction(ACTIONS.find((a) => a.prompt), prompt);
  });
  page.stage.addEventListener("hover", (e) => {
    const d = e.detail;
    $("coords").textContent = d && d.inside ? `x ${d.x.toFixed(1)}  y ${d.y.toFixed(1)}` : "";
  });
  page.stage.addEventListener("view", (e) => {
    $("zoom-level").textContent = `${Math.round(e.detail.scale * 100)}%`;
  });
}

function bindComposer() {
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    send($("input").value);
  });
  $("stop-btn").addEventListener("click", stop);
  $("input").addEventListener("input", () => autosize($("input")));
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send($("input").value);
    }
  });
}

const MODE_KEYS = { c: "click", b: "box", p: "brush", m: "move", s: "sketch", h: "pan" };

function bindShortcuts() {
  bindKeys(
    {
      mode: (e) => setMode(MODE_KEYS[e.key.toLowerCase()]),
      toggleAdd: () => setAdd(!page.stage.addMode),
      toggleExclude: () => setExclude(!page.stage.exclude),
      action: (e) => runAction(actionForKey(e.key)),
      undo,
      redo,
      download: () => exportImage("image/png"),
      before: holdBefore,
      beforeUp: releaseBefore,
      clear: clearAll,
      zoom: (e) => {
        const key = e.key.toLowerCase();
        if (key === "f") page.stage.fit();
        else page.stage.zoomBy(key === "-" ? 0.8 : 1.25);
      },
      focusInput: () => $("input").focus(),
      help: () => $("help").showModal(),
    },
    $("input"),
  );
  renderHelp($("help-modes"), $("help-keys"));
}

/**
 * The status line: version, tools, and the models the start-up warm-up is still loading
 * (`health.loading`: part -> "waiting" | "loading" | "ready" | ...). While some load, asks
 * again every 2 s; the first request that needs one of them waits for it meanwhile.
 */
function showHealth(health) {
  const loading = Object.entries(health.loading || {})
    .filter(([, state]) => state === "waiting" || state === "loading")
    .map(([part]) => part);
  const base = `server ${health.version} · ${health.tools_available}/${health.tools_total} tools`;
  $("status").textContent = loading.length ? `${base} · loading ${loading.join(", ")}…` : base;
  if (loading.length) {
    setTimeout(() => api.health().then(showHealth, () => {}), 2000);
  }
}

async function main() {
  bindToolbar();
  bindFiles();
  bindComposer();
  bindVoice();
  bindShortcuts();
  bindPointing(page.stage);
  setMode("click");
  showWidth(Number($("width").value));
  const askKey = setupAuth($("auth-dialog"));
  let health = null;
  try {
    health = await api.health();
    showHealth(health);
  } catch (err) {
    $("status").textContent = `server unreachable: ${err.message}`;
  }
  if (health && health.auth === "keys" && !sessionStorage.getItem("igpt.key")) await askKey();
  loadTools();
  try {
    await startSession();
  } catch (err) {
    showError(err);
  }
  document.body.dataset.ready = "1";
}

main();
