/**
 * The chat log: user messages, streamed tool steps, replies with their new images, notes
 * (OCR text, selections) and errors in the server's words.
 */

import { videoElement } from "./video.js";

export class ChatLog {
  /** `onOpenImage(artifact)` is called when a result image in the log is clicked. */
  constructor(element, onOpenImage) {
    this.el = element;
    this.onOpenImage = onOpenImage;
  }

  clear() {
    this.el.replaceChildren();
  }

  user(text, context = "") {
    const div = el("div", "msg user", text);
    if (context) div.append(el("span", "with", context));
    return this._add(div);
  }

  assistant(text, artifacts = []) {
    const div = el("div", "msg assistant", text);
    this._images(div, artifacts);
    return this._add(div);
  }

  note(title, text, artifacts = []) {
    const div = el("div", "msg note");
    div.append(el("span", "title", title), document.createTextNode(text));
    this._images(div, artifacts);
    return this._add(div);
  }

  error(error, title = "Error") {
    const div = el("div", "msg error");
    const code = error && error.code ? ` · ${error.code}` : "";
    div.append(el("span", "title", `${title}${code}`), document.createTextNode(error.message || String(error)));
    return this._add(div);
  }

  /**
   * One tool step: `{tool, args, observation, recovered, chosen_by?}` (a chat step), or a
   * one-step action's call shown the same way (`chosen_by: "you"`).
   */
  step(step) {
    const div = el("div", "step");
    const head = el("div", "head");
    head.append(icon("i-tools"), el("span", "tool", step.tool || "tool"));
    if (step.chosen_by) head.append(el("span", "chosen", `chosen by ${step.chosen_by}`));
    div.append(head);
    const recovered = new Set(step.recovered || []);
    const args = step.args || {};
    const names = Object.keys(args);
    if (names.length) {
      const list = el("div", "args");
      for (const name of names) {
        const chip = el("span", recovered.has(name) ? "arg recovered" : "arg");
        chip.append(el("span", "v", `${name}=${short(args[name])}`));
        if (recovered.has(name)) chip.append(el("span", "tag", "↺ recovered"));
        chip.title = `${name} = ${JSON.stringify(args[name])}${recovered.has(name) ? "\n(filled in or corrected by the auxiliary control)" : ""}`;
        chip.dataset.arg = name;
        list.append(chip);
      }
      div.append(list);
    }
    for (const name of recovered) {
      if (!(name in args)) {
        const chip = el("span", "arg recovered");
        chip.append(el("span", "v", name), el("span", "tag", "↺ recovered"));
        (div.querySelector(".args") || div.appendChild(el("div", "args"))).append(chip);
      }
    }
    if (step.observation) div.append(el("div", "obs", step.observation));
    return this._add(div);
  }

  /**
   * A "working" line with a spinner and, where the server knows it, a progress bar;
   * returns {set(text, percent?), remove()}; `percent` 0..100 or null (no bar).
   */
  working(text) {
    const div = el("div", "working");
    const label = el("span", "label", text);
    const bar = el("span", "bar");
    const fill = el("span", "fill");
    bar.append(fill);
    bar.hidden = true;
    div.append(el("span", "spinner"), label, bar);
    this._add(div);
    return {
      set: (t, percent = null) => {
        label.textContent = t;
        bar.hidden = percent === null || percent === undefined;
        if (!bar.hidden) fill.style.width = `${Math.max(0, Math.min(100, percent))}%`;
        this._add(div); // keep it last
      },
      remove: () => div.remove(),
    };
  }

  _images(div, artifacts) {
    const images = (artifacts || []).filter((a) => ["image", "sketch", "material", "video"].includes(a.kind));
    if (!images.length) return;
    const row = el("div", "images");
    for (const artifact of images) {
      if (artifact.kind === "video") {
        row.append(videoElement(artifact)); // a clip made by a tool (track, highlight, narrate) plays here
        continue;
      }
      const img = document.createElement("img");
      img.src = artifact.url;
      img.alt = artifact.path;
      if (artifact.kind === "material") {
        img.title = `${artifact.path}: a cut-out kept for composing`;
        img.classList.add("material");
      } else {
        img.title = `${artifact.path} (click to show)`;
        img.addEventListener("click", () => this.onOpenImage(artifact));
      }
      row.append(img);
    }
    div.append(row);
  }

  _add(node) {
    const nearBottom = this.el.scrollHeight - this.el.scrollTop - this.el.clientHeight < 80;
    this.el.append(node);
    if (nearBottom || node.classList.contains("user")) this.el.scrollTop = this.el.scrollHeight;
    return node;
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function icon(id) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const use = document.createElementNS("http://www.w3.org/2000/svg", "use");
  use.setAttribute("href", `#${id}`);
  svg.append(use);
  return svg;
}

function short(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 48 ? `${text.slice(0, 45)}…` : text;
}
