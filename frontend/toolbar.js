/**
 * What the toolbar, the selection bar and the composer show for the current state: which
 * buttons work, the mode, the hint over the image, the selection's objects, the chip of what
 * a message is sent with, and which tools this server lacks (greyed, the reason on hover).
 */

import { ACTIONS, availability } from "./actions.js";
import { describeMarks, drawable, hasMarks } from "./marks.js";
import { chatGesture, pointingGesture, removeComponent } from "./pointing.js";
import { page, state } from "./state.js";

const $ = (id) => document.getElementById(id);

const HINTS = {
  click: "Click an object to select it · Shift+click adds another · Alt+click leaves a part out",
  box: "Drag a box around something · Shift adds it as another object",
  brush: "Paint over the object · Shift adds it as another object",
  move: "Drag the selected object to its new place",
  sketch: "Draw strokes for generation · then describe what to make",
  pan: "Drag to pan · wheel or pinch to zoom",
};

export function setMode(mode) {
  state.mode = mode;
  $("width-group").dataset.mode = mode;
  page.stage.setMode(mode);
  for (const b of document.querySelectorAll(".btn.mode")) b.setAttribute("aria-checked", String(b.dataset.mode === mode));
  $("width-group").hidden = !(mode === "brush" || mode === "sketch");
  updateUi();
}

export function setExclude(on) {
  page.stage.exclude = on;
  if (on) setAdd(false);
  $("exclude-btn").setAttribute("aria-pressed", String(on));
  if (on && state.mode !== "click") setMode("click");
  updateUi();
}

export function setAdd(on) {
  page.stage.addMode = on;
  if (on && page.stage.exclude) setExclude(false);
  $("add-btn").setAttribute("aria-pressed", String(on));
  updateUi();
}

export function showWidth(width) {
  page.stage.brushWidth = width;
  $("width-out").textContent = String(width);
  $("width-dot").style.setProperty("--w", `${Math.max(3, Math.min(22, width / 3))}px`);
}

/** Build the action buttons beside the selection (once). `onAction(action)` runs one. */
export function buildActions(onAction) {
  const icons = { erase: "i-erase", cutout: "i-cut", crop: "i-crop", blur: "i-blur", replace: "i-replace" };
  const buttons = ACTIONS.map((action) => {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "btn action-btn";
    b.id = `action-${action.id}`;
    b.dataset.tool = action.tool;
    b.innerHTML = `<svg><use href="#${icons[action.id]}"/></svg><span class="label"></span>`;
    b.querySelector(".label").textContent = action.label;
    b.addEventListener("click", () => onAction(action));
    return b;
  });
  $("actions").replaceChildren(...buttons);
}

/** Grey the tools this server lacks, with the reason on hover (from GET /api/tools). */
function showAvailability() {
  for (const action of ACTIONS) {
    const b = $(`action-${action.id}`);
    const { available, reason } = availability(state.tools, action.tool);
    b.classList.toggle("unavailable", !available);
    b.setAttribute("aria-disabled", String(!available));
    const keys = action.keys.map((k) => (k.length === 1 ? k.toUpperCase() : k)).join(" / ");
    b.title = available ? `${action.hint} (${keys}) · tool ${action.tool}` : `${action.label} is not available here: ${reason}`;
    // Replace... is offered only where the server can paint something new
    if (action.prompt) b.hidden = !available;
  }
  const generate = availability(state.tools, "generate");
  const sketch = $("sketch-mode");
  sketch.classList.toggle("limited", !generate.available);
  sketch.title = generate.available
    ? "Sketch strokes for generation (S)"
    : `Sketch (S): strokes are kept, but generating from them needs the full tier: ${generate.reason}`;
}

function renderComponents() {
  const list = $("components");
  const components = state.components.of(state.mask && state.mask.path);
  const chips = [];
  const label = document.createElement("span");
  label.className = "components-label";
  label.textContent = components && components.length > 1 ? `Selection · ${components.length} objects` : "Selection";
  chips.push(label);
  (components || []).forEach((c, i) => {
    const chip = document.createElement("span");
    chip.className = "component";
    chip.dataset.index = String(i);
    chip.textContent = `${i + 1} · ${c.label}`;
    const x = document.createElement("button");
    x.type = "button";
    x.className = "remove";
    x.title = "Take this object out of the selection";
    x.setAttribute("aria-label", `Take object ${i + 1} out of the selection`);
    x.textContent = "×";
    x.addEventListener("click", () => removeComponent(i));
    chip.append(x);
    chips.push(chip);
  });
  list.replaceChildren(...chips);
}

function renderContext(image) {
  const chips = [];
  const sent = chatGesture();
  if (sent && image) chips.push(describeMarks({ gestures: [sent], sketches: [] }));
  if (state.mask) {
    const marks = describeMarks(state.marks);
    chips.push(marks ? `selection · ${marks}` : `selection ${state.mask.path.split("/").pop()}`);
  }
  if (state.marks.sketches.length) chips.push(`sketch · ${state.marks.sketches.length} stroke${state.marks.sketches.length > 1 ? "s" : ""}`);
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
}

function hint(image) {
  if (!image) return "";
  if (state.compare) return "Before (left) and after (right) · drag the slider · Compare again to leave";
  const touch = matchMedia("(pointer: coarse)").matches;
  const tap = touch ? "tap" : "click";
  if (state.mode === "sketch" && !availability(state.tools, "generate").available) {
    return "Sketch strokes are kept · generating from them needs the full tier (see Tools)";
  }
  if (state.mode === "move" && !state.mask) return "Drag an object to its new place (or select it first for precision)";
  if (state.mode !== "click") return HINTS[state.mode];
  if (page.stage.exclude) return `Leaving out: ${tap} the parts that are not the object`;
  if (page.stage.addMode) return `+ add: ${tap} another object to add it to the selection`;
  if (state.mask) return `Selected · Erase, Cut out, Crop… or say what to do · Shift+${tap} adds another object`;
  if (touch) return "Tap an object to select it · long-press leaves a part out";
  return HINTS.click;
}

/** Show the current state everywhere. */
export function updateUi() {
  page.stage.setMarks(drawable(state.marks));
  const pointing = pointingGesture();
  const image = Boolean(state.image);
  const working = state.busy > 0 || state.turn !== null;
  $("select-btn").disabled = !image || !pointing;
  $("ocr-btn").disabled = !image || !pointing;
  $("select-btn").classList.toggle("ready", Boolean(pointing) && !$("auto-select").checked && !working);
  $("ocr-btn").classList.toggle("ready", Boolean(pointing && pointing.type === "box") && !working);
  $("undo-btn").disabled = state.turn !== null || state.canUndo === false || (state.canUndo === null && !image);
  $("redo-btn").disabled = state.turn !== null || state.canRedo === false || (state.canRedo === null && !image);
  $("clear-btn").disabled = !hasMarks(state.marks) && !state.mask;
  $("send-btn").hidden = state.turn !== null;
  $("stop-btn").hidden = state.turn === null;
  $("zoom-in").disabled = $("zoom-out").disabled = $("zoom-level").disabled = !image;
  $("export-btn").classList.toggle("disabled", !image);
  $("export-mask").disabled = $("export-cutout").disabled = !state.mask;
  $("compare-btn").disabled = !image;
  $("compare-btn").setAttribute("aria-pressed", String(Boolean(state.compare)));
  $("compare-split-group").hidden = !state.compare;
  $("selection-bar").hidden = !state.mask || Boolean(state.compare);
  for (const b of $("actions").children) b.disabled = working;
  showAvailability();
  renderComponents();
  renderContext(image);
  $("hint").textContent = hint(image);
}
