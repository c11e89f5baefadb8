/**
 * Pointing: the stage's gestures become marks and requests to the perception unit
 * (`POST /api/sessions/{id}/gesture`): select (with `add` for another object), OCR, move,
 * sketch. Keeps the selection's components (selection.js) and takes one out on request.
 *
 * A plain click, box or stroke selects a new object; with "+ add" (or Shift) it is another
 * object added to the selection; an exclude point (Alt+click, the − button, a long press)
 * refines the last clicked object.
 */

import { api } from "./api.js";
import { boxGesture, clickGesture, dragGesture, strokeGesture } from "./geometry.js";
import { describeGesture, lastGesture, withExcludePoint, withGesture, withSketch } from "./marks.js";
import { count, maskPixels, pixelsToPng, union } from "./selection.js";
import { loadImage } from "./session.js";
import { page, state } from "./state.js";
import { toast } from "./ui.js";

let selectRunning = null;
let selectPending = null;

export function needImage() {
  if (state.image) return true;
  toast("Open an image first");
  return false;
}

export function autoSelect() {
  return document.getElementById("auto-select").checked;
}

/**
 * Select with `gesture`. `how`: "new", "add" (another object) or "refine" (the last object
 * redrawn). Quick successive requests collapse into the latest one.
 */
export function select(gesture, how = "new") {
  selectPending = { gesture, how };
  if (!selectRunning) selectRunning = drainSelect();
  return selectRunning;
}

async function drainSelect() {
  try {
    while (selectPending) {
      const { gesture, how } = selectPending;
      selectPending = null;
      await page.busy("Selecting…", () => selectOnce(gesture, how));
    }
  } finally {
    selectRunning = null;
  }
}

async function selectOnce(gesture, how) {
  const image = state.image;
  const previous = state.mask ? state.mask.path : null;
  let components = state.components.of(previous);
  if (previous && !components && how === "add") {
    // a selection the page did not make (a chat turn, a reload): it is one object
    const pixels = maskPixels(await loadImage(state.mask.url), image.width, image.height);
    components = [{ label: "selection", pixels, area: count(pixels) }];
    state.components.set(previous, components);
  }
  // refining the only object re-segments it alone; otherwise the server unites with the rest
  const add = how === "add" ? previous !== null : how === "refine" && previous !== null && (components || []).length > 1;
  await api.gesture(state.session, { gesture, intent: "select", image: image.path, add });
  await page.refresh();
  if (!state.mask) return;
  const pixels = maskPixels(await loadImage(state.mask.url), image.width, image.height);
  const mode = !add ? "new" : how === "refine" ? "refine" : "add";
  state.components.record(state.mask.path, pixels, previous, mode, describeGesture(gesture));
  state.selectedFrom = { mask: state.mask.path, gesture: JSON.stringify(gesture) };
  page.updateUi();
}

/**
 * Take component `index` out of the selection: the union of the others is uploaded as a
 * mask of the image (`kind=mask`, `parent`), or the selection is cleared when none is left.
 */
export async function removeComponent(index) {
  const image = state.image;
  const components = state.components.of(state.mask && state.mask.path);
  if (!image || !components) return;
  const rest = components.filter((_, i) => i !== index);
  await page.busy("Updating the selection…", async () => {
    if (rest.length === 0) {
      await api.setActive(state.session, image.path, null);
    } else {
      const pixels = union(rest.map((c) => c.pixels), image.width * image.height);
      const png = await pixelsToPng(pixels, image.width, image.height);
      const mask = await api.upload(state.session, png, "selection.png", { kind: "mask", parent: image.path });
      state.components.set(mask.path, rest);
      state.selectedFrom = null;
    }
    state.marks = { ...state.marks, gestures: state.marks.gestures.filter((_, i) => i !== index) };
    await page.refresh();
  });
}

/** The gesture to send with a chat message: none when it already is the visible selection. */
export function chatGesture() {
  const gesture = lastGesture(state.marks);
  const from = state.selectedFrom;
  const selected = from && state.mask && from.mask === state.mask.path;
  return selected || !gesture ? null : gesture;
}

/** The pointing gesture for Select and OCR: the latest click, box or stroke. */
export function pointingGesture() {
  return lastGesture(state.marks);
}

async function pointGesture(gesture, add) {
  state.marks = withGesture(state.marks, gesture, add);
  page.updateUi();
  if (autoSelect()) await select(gesture, add ? "add" : "new");
}

function onPoint(e) {
  if (!needImage()) return;
  const { x, y, label, add } = e.detail;
  if (label === 0) {
    const refined = withExcludePoint(state.marks, { x, y });
    if (!refined) {
      toast("Leave-out points refine a clicked object: click the object first, then Alt+click (or long-press) the part to leave out");
      return;
    }
    state.marks = refined.marks;
    page.updateUi();
    if (autoSelect()) select(refined.gesture, "refine");
    return;
  }
  pointGesture(clickGesture([{ x, y, label: 1 }]), Boolean(add));
}

function onBox(e) {
  const { width, height } = page.stage.size;
  const box = boxGesture(e.detail.p0, e.detail.p1, width, height);
  if (box) pointGesture(box, Boolean(e.detail.add));
}

function onStroke(e) {
  const stroke = strokeGesture(e.detail.points, e.detail.width);
  if (stroke) pointGesture(stroke, Boolean(e.detail.add));
}

async function onSketch(e) {
  const stroke = strokeGesture(e.detail.points, e.detail.width);
  if (!stroke) return;
  state.marks = withSketch(state.marks, stroke);
  page.updateUi();
  await page.busy("Saving sketch…", async () => {
    const add = state.marks.sketches.length > 1;
    await api.gesture(state.session, { gesture: stroke, intent: "sketch", image: state.image.path, add });
    await page.refresh();
  });
}

async function onDrag(e) {
  // the server moves the selection when the drag starts on it, else the object under the start
  const drag = dragGesture(e.detail.start, e.detail.end);
  await page.busy("Moving the object…", async () => {
    const out = await api.gesture(state.session, { gesture: drag, intent: "move", image: state.image.path, add: false });
    await page.refresh();
    if (out.text) page.log.note("Move", out.text, out.artifacts);
  });
}

export async function selectButton() {
  const gesture = pointingGesture();
  if (!gesture || !needImage()) return;
  await select(gesture, "new");
}

export async function ocrButton() {
  const gesture = pointingGesture();
  if (!gesture || !needImage()) return;
  await page.busy("Reading text…", async () => {
    const out = await api.gesture(state.session, { gesture, intent: "ocr", image: state.image.path, add: false });
    const text = (out.text || "").trim();
    page.log.note("Text (OCR)", text || "No text found under the gesture.");
    await page.refresh();
  });
}

/** Listen to the stage's gestures. */
export function bindPointing(stage) {
  stage.addEventListener("point", onPoint);
  stage.addEventListener("box", onBox);
  stage.addEventListener("stroke", onStroke);
  stage.addEventListener("sketch", onSketch);
  stage.addEventListener("drag", onDrag);
  stage.addEventListener("outside", () => toast("That is outside the image"));
}
