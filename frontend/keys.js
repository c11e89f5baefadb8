/**
 * Keyboard shortcuts and the help overlay (`?`) that lists them: one table, so the overlay
 * always tells the truth.
 *
 * Shortcuts work wherever the focus is, except while typing: in the message box, Ctrl+Z and
 * Ctrl+Shift+Z edit its text while it holds some, and undo and redo the session when it is
 * empty; other keys type.
 */

import { isTyping } from "./ui.js";

/** The pointing modes, as the help overlay lists them. */
export const MODES = [
  ["Click (C)", "click an object to select it; Shift+click or “+ add” selects one more object; Alt+click or − leaves a part out"],
  ["Box (B)", "drag a box around something; Shift+drag adds it as another object"],
  ["Brush (P)", "paint over an object; Shift adds the stroke as another object"],
  ["Move (M)", "drag the selected object to a new place"],
  ["Sketch (S)", "draw strokes for generation (generating needs the full tier)"],
  ["Pan (H)", "drag to pan; Space+drag, the middle button, the wheel or two fingers too"],
  ["Touch", "tap selects, a long press leaves a part out, two fingers pan and zoom"],
  ["Right click", "the browser's own menu (copy or save the canvas)"],
];

/** `[keys, what, handler name, test(e)]`; handlers are given to bindKeys. */
export const SHORTCUTS = [
  ["C B P M S H", "pointing modes", "mode", (e) => "cbpmsh".includes(e.key.toLowerCase()) && e.key.length === 1],
  ["A", "“+ add”: the next click, box or stroke is another object", "toggleAdd", (e) => low(e) === "a"],
  ["X", "exclude: the next clicks leave parts out", "toggleExclude", (e) => low(e) === "x"],
  ["Delete / Backspace", "erase the selection", "action", (e) => e.key === "Delete" || e.key === "Backspace"],
  ["K", "cut the selection out", "action", (e) => low(e) === "k"],
  ["R", "crop to the selection", "action", (e) => low(e) === "r"],
  ["G", "blur the background", "action", (e) => low(e) === "g"],
  ["E", "replace the selection (full tier)", "action", (e) => low(e) === "e"],
  ["Ctrl+Z", "undo (server history)", "undo", (e) => ctrl(e) && low(e) === "z" && !e.shiftKey],
  ["Ctrl+Shift+Z / Ctrl+Y", "redo", "redo", (e) => ctrl(e) && ((low(e) === "z" && e.shiftKey) || low(e) === "y")],
  ["Ctrl+S", "download the image (PNG)", "download", (e) => ctrl(e) && low(e) === "s"],
  ["\\ (hold)", "show the image before (its parent)", "before", (e) => e.key === "\\"],
  ["Esc", "stop a running turn, else clear the marks and the selection", "clear", (e) => e.key === "Escape"],
  ["F / + / −", "fit, zoom in, zoom out", "zoom", (e) => ["f", "+", "=", "-"].includes(low(e))],
  ["Enter", "go to the message box", "focusInput", (e) => e.key === "Enter"],
  ["?", "this help", "help", (e) => e.key === "?"],
];

const low = (e) => (e.key.length === 1 ? e.key.toLowerCase() : e.key);
const ctrl = (e) => e.ctrlKey || e.metaKey;

/**
 * Listen for the shortcuts on `window`. `handlers[name](e)` runs for a matching shortcut;
 * `handlers.beforeUp()` when the hold-to-compare key is released. `textBox` is the message box.
 */
export function bindKeys(handlers, textBox) {
  window.addEventListener("keydown", (e) => {
    if (e.isComposing) return;
    const withCtrl = ctrl(e);
    if (isTyping(e)) {
      // in the message box: undo/redo the session only while it is empty
      const undoKey = withCtrl && ["z", "y"].includes(low(e));
      if (!(undoKey && e.target === textBox && textBox.value === "")) return;
    }
    if (document.querySelector("dialog[open]")) return; // Escape closes the dialog, nothing else
    if (e.altKey) return;
    const hit = SHORTCUTS.find(([, , name, test]) => test(e) && (withCtrl === ["undo", "redo", "download"].includes(name)));
    if (!hit) return;
    if (hit[2] === "before" && e.repeat) {
      e.preventDefault();
      return;
    }
    e.preventDefault();
    handlers[hit[2]](e);
  });
  window.addEventListener("keyup", (e) => {
    if (e.key === "\\") handlers.beforeUp();
  });
}

/** Fill the help overlay's lists. */
export function renderHelp(modesList, keysList) {
  const row = (term, text) => {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = text;
    return [dt, dd];
  };
  modesList.replaceChildren(...MODES.flatMap(([m, t]) => row(m, t)));
  keysList.replaceChildren(...SHORTCUTS.map(([k, t]) => row(k, t)).flat());
}
