/**
 * Small page-wide feedback: toasts, the busy pill on the stage (with a progress bar where
 * the server reports a percentage) and errors in the server's own words.
 */

import { ApiError } from "./api.js";

const $ = (id) => document.getElementById(id);

export function toast(message, isError = false) {
  const box = $("toasts");
  const div = document.createElement("div");
  div.className = isError ? "toast error" : "toast";
  div.textContent = message;
  box.append(div);
  while (box.children.length > 3) box.firstChild.remove();
  setTimeout(() => div.remove(), isError ? 7000 : 3500);
}

/** The busy pill: `show(text, percent?)` / `hide()`; `percent` 0..100 draws a bar under the text. */
export const busyPill = {
  show(text, percent = null) {
    $("busy").hidden = false;
    $("busy-text").textContent = text;
    const bar = $("busy-bar");
    bar.hidden = percent === null || percent === undefined;
    if (!bar.hidden) bar.firstElementChild.style.width = `${Math.max(0, Math.min(100, percent))}%`;
  },
  hide() {
    $("busy").hidden = true;
    $("busy-bar").hidden = true;
  },
};

/** An error as one line for a toast: the server's message, or the browser's. */
export function errorMessage(err) {
  return err instanceof ApiError ? err.message : `${err.name}: ${err.message}`;
}

export function autosize(input) {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 140)}px`;
}

/** Whether a key event happens while typing text (the page's shortcuts stay out of the way). */
export function isTyping(e) {
  const t = e.target;
  if (!t) return false;
  if (t.tagName === "TEXTAREA" || t.isContentEditable) return true;
  return t.tagName === "INPUT" && !["checkbox", "radio", "range", "button"].includes(t.type);
}
