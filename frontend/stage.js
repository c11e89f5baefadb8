/**
 * The image stage: one canvas that shows the image, the selection (tinted overlay with an
 * outline) and the marks of the current gesture, and turns pointer input (mouse, pen,
 * touch; Pointer Events) into gestures in image pixels.
 *
 * Events (CustomEvent `detail`, coordinates in image pixels):
 *   "point"  {x, y, label, add}       click mode: one click (label 1 include, 0 exclude)
 *   "box"    {p0, p1, add}            box mode: the two corners
 *   "stroke" {points, width, add}     brush mode: one stroke, width in image pixels
 *   "drag"   {start, end}             move mode: from the object to its new place
 *   "sketch" {points, width}          sketch mode: one free stroke
 *   "hover"  {x, y, inside} | null    the pointer's image position
 *   "view"   {scale}                  after zoom or pan
 *   "outside" {}                      a gesture began off the image
 *
 * Modifiers: Shift (or `addMode`) makes a click, box or stroke a new object added to the
 * selection (`add: true`); Alt (or `exclude`, or a long press on a touch screen) makes a
 * click an exclude point. The right mouse button is left to the browser (its context menu
 * saves or copies the canvas), the middle button pans.
 */

import {
  clampToImage,
  clientToDisplay,
  displayToImage,
  distance,
  fitView,
  imageToDisplay,
  insideImage,
  panBy,
  zoomAt,
} from "./geometry.js";

const TAP_SLOP = 6; // display px a click may wander before it becomes a pan
const FIT_PADDING = 24;
/** Display px kept free above (the hint) and below (the selection bar, the zoom) a fitted image. */
const FIT_INSETS = { top: 36, bottom: 104 };
const TINT = [56, 189, 248]; // selection colour (sky blue)
const LONG_PRESS_MS = 550; // a touch held this long without moving is an exclude point

export class Stage extends EventTarget {
  constructor(canvas) {
    super();
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.layer = document.createElement("canvas"); // selection overlay, display resolution
    this.image = null; // HTMLImageElement | ImageBitmap
    this.size = null; // {width, height} of the image
    this.mask = null; // canvas at image size: TINT where selected, transparent elsewhere
    this.view = { scale: 1, x: 0, y: 0 };
    this.insets = FIT_INSETS;
    this.fitted = true; // the view follows resizes until the user zooms or pans
    this.mode = "click";
    this.brushWidth = 24; // display px
    this.exclude = false; // click mode: the next points mark what is not the object
    this.addMode = false; // the next click, box or stroke is a new object added to the selection
    this.compare = null; // {image, split}: the image before, drawn left of split (0..1 of the width)
    this.longPress = 0;
    this.marks = { points: [], boxes: [], strokes: [], sketches: [] };
    this.live = null; // the gesture under the pointer
    this.pointers = new Map();
    this.pinch = null;
    this.spaceHeld = false;
    this.cssW = 1;
    this.cssH = 1;
    this.frame = 0;
    this._bind();
  }

  // ---- public API -------------------------------------------------------------------

  /** Show an image (an HTMLImageElement that has loaded); fits it into the view unless keepView. */
  setImage(image, { keepView = false } = {}) {
    const sameSize = this.size && this.size.width === image.naturalWidth && this.size.height === image.naturalHeight;
    this.image = image;
    this.size = { width: image.naturalWidth, height: image.naturalHeight };
    this.mask = null;
    if (!(keepView && sameSize)) this.fit();
    this.requestRender();
  }

  clearImage() {
    this.image = null;
    this.size = null;
    this.mask = null;
    this.requestRender();
  }

  /** Show a selection: a loaded mask image (white = selected) of the current image's size, or null. */
  setMask(maskImage) {
    this.mask = maskImage ? tintedMask(maskImage, this.size) : null;
    this.requestRender();
  }

  /** Marks of the current gesture: {points: [{x,y,label}], boxes: [{x0,y0,x1,y1}], strokes, sketches}. */
  setMarks(marks) {
    this.marks = { points: [], boxes: [], strokes: [], sketches: [], ...marks };
    this.requestRender();
  }

  /**
   * Before/after: draw `image` (a loaded image: the one before) over the left `split` share
   * (0..1) of the current image's place; null shows the current image alone.
   */
  setCompare(compare) {
    this.compare = compare;
    this.requestRender();
  }

  setMode(mode) {
    this.mode = mode;
    this.live = null;
    this.canvas.dataset.mode = mode;
    this.requestRender();
  }

  /** Fit the image into the stage, clear of the hint above and the selection bar below. */
  fit() {
    if (!this.size) return;
    const { top, bottom } = this.insets;
    const room = Math.max(this.cssH - top - bottom, 1);
    const view = fitView(this.size.width, this.size.height, this.cssW, room, FIT_PADDING);
    this.view = { scale: view.scale, x: view.x, y: view.y + top };
    this.fitted = true;
    this._emitView();
    this.requestRender();
  }

  /** Zoom by `factor` around the stage centre (or a display point). */
  zoomBy(factor, at = [this.cssW / 2, this.cssH / 2]) {
    if (!this.size) return;
    this.view = zoomAt(this.view, factor, at[0], at[1]);
    this.fitted = false;
    this._emitView();
    this.requestRender();
  }

  /** Show the image at 1 image pixel per CSS pixel, centred. */
  actualSize() {
    if (!this.size) return;
    this.zoomBy(1 / this.view.scale);
  }

  /** Image pixel -> CSS pixel relative to the page's viewport (for tests and popovers). */
  imageToClient(ix, iy) {
    const rect = this.canvas.getBoundingClientRect();
    const [dx, dy] = imageToDisplay(this.view, ix, iy);
    return [rect.left + dx, rect.top + dy];
  }

  requestRender() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  // ---- input ------------------------------------------------------------------------

  _bind() {
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => this._down(e));
    c.addEventListener("pointermove", (e) => this._move(e));
    c.addEventListener("pointerup", (e) => this._up(e));
    c.addEventListener("pointercancel", (e) => this._cancel(e));
    c.addEventListener("pointerleave", () => this._emit("hover", null));
    c.addEventListener("wheel", (e) => this._wheel(e), { passive: false });
    window.addEventListener("keydown", (e) => {
      if (e.code === "Space" && !isTyping(e)) {
        this.spaceHeld = true;
        c.dataset.pan = "1";
        e.preventDefault();
      }
    });
    window.addEventListener("keyup", (e) => {
      if (e.code === "Space") {
        this.spaceHeld = false;
        delete c.dataset.pan;
      }
    });
    new ResizeObserver(() => this._resize()).observe(c.parentElement);
    this._resize();
  }

  _resize() {
    const box = this.canvas.parentElement.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(Math.round(box.width), 1);
    const h = Math.max(Math.round(box.height), 1);
    if (w === this.cssW && h === this.cssH && this.canvas.width === Math.round(w * dpr)) return;
    const [cx, cy] = displayToImage(this.view, this.cssW / 2, this.cssH / 2);
    this.cssW = w;
    this.cssH = h;
    for (const canvas of [this.canvas, this.layer]) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${h}px`;
    if (this.fitted) this.fit();
    else this.view = { scale: this.view.scale, x: w / 2 - cx * this.view.scale, y: h / 2 - cy * this.view.scale };
    this.render();
  }

  _local(e) {
    return clientToDisplay(this.canvas.getBoundingClientRect(), e.clientX, e.clientY);
  }

  _down(e) {
    if (!this.size || e.button === 2) return; // the right button opens the browser's menu
    e.preventDefault();
    this.canvas.setPointerCapture(e.pointerId);
    const at = this._local(e);
    this.pointers.set(e.pointerId, at);
    if (this.pointers.size === 2) {
      // a second finger: pinch-zoom and pan; the gesture in progress is dropped
      this._stopLongPress();
      this.live = null;
      const [a, b] = [...this.pointers.values()];
      this.pinch = { center: midpoint(a, b), dist: distance(a, b) };
      this.requestRender();
      return;
    }
    if (this.pointers.size > 2) return;
    const image = displayToImage(this.view, at[0], at[1]);
    const pan = e.button === 1 || this.spaceHeld || this.mode === "pan";
    if (pan) {
      this.live = { kind: "pan", last: at };
      return;
    }
    const inside = insideImage(image[0], image[1], this.size.width, this.size.height);
    const exclude = e.altKey || this.exclude;
    const add = e.shiftKey || this.addMode;
    const kind = this.mode;
    if (!inside && kind !== "box") {
      // a press off the image pans (touch users need a way to move a zoomed image)
      this.live = { kind: "pan", last: at, outside: true, start: at };
      return;
    }
    this.live = { kind, start: at, last: at, startImage: image, label: exclude ? 0 : 1, add, points: [image], moved: false };
    if (kind === "move") this.live.ghost = this.mask ? cutout(this.image, this.mask, this.size) : null;
    if (kind === "click" && e.pointerType === "touch" && !exclude) this._startLongPress(this.live);
    this.requestRender();
  }

  /** A touch held still for LONG_PRESS_MS in click mode is an exclude point. */
  _startLongPress(live) {
    this._stopLongPress();
    this.longPress = setTimeout(() => {
      this.longPress = 0;
      if (this.live !== live || live.moved || this.pointers.size !== 1) return;
      this.live = null;
      if (navigator.vibrate) navigator.vibrate(15);
      this._emit("point", { x: live.startImage[0], y: live.startImage[1], label: 0, add: false });
      this.requestRender();
    }, LONG_PRESS_MS);
  }

  _stopLongPress() {
    if (this.longPress) clearTimeout(this.longPress);
    this.longPress = 0;
  }

  _move(e) {
    const at = this._local(e);
    if (this.size) {
      const [x, y] = displayToImage(this.view, at[0], at[1]);
      this._emit("hover", { x, y, inside: insideImage(x, y, this.size.width, this.size.height) });
    }
    if (!this.pointers.has(e.pointerId)) return;
    this.pointers.set(e.pointerId, at);
    if (this.pinch && this.pointers.size >= 2) {
      const [a, b] = [...this.pointers.values()];
      const center = midpoint(a, b);
      const dist = distance(a, b);
      let view = zoomAt(this.view, dist / Math.max(this.pinch.dist, 1), center[0], center[1]);
      view = panBy(view, center[0] - this.pinch.center[0], center[1] - this.pinch.center[1]);
      this.view = view;
      this.pinch = { center, dist };
      this.fitted = false;
      this._emitView();
      this.requestRender();
      return;
    }
    const live = this.live;
    if (!live) return;
    if (live.kind === "pan") {
      this.view = panBy(this.view, at[0] - live.last[0], at[1] - live.last[1]);
      live.last = at;
      this.fitted = false;
      this._emitView();
      this.requestRender();
      return;
    }
    if (distance(at, live.start) > TAP_SLOP) live.moved = true;
    if (live.kind === "click") {
      if (live.moved) {
        // dragging in click mode pans the image
        this.live = { kind: "pan", last: live.last };
        this.view = panBy(this.view, at[0] - live.last[0], at[1] - live.last[1]);
        this.fitted = false;
        this._emitView();
        this.requestRender();
      }
      return;
    }
    live.last = at;
    const image = displayToImage(this.view, at[0], at[1]);
    const samples = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [];
    if (live.kind === "brush" || live.kind === "sketch") {
      const rect = this.canvas.getBoundingClientRect();
      const events = samples.length ? samples : [e];
      for (const sample of events) {
        const [dx, dy] = clientToDisplay(rect, sample.clientX, sample.clientY);
        const [ix, iy] = displayToImage(this.view, dx, dy);
        live.points.push(clampToImage(ix, iy, this.size.width, this.size.height));
      }
    } else {
      live.current = image;
    }
    this.requestRender();
  }

  _up(e) {
    this._stopLongPress();
    const wasPinch = this.pinch !== null;
    this.pointers.delete(e.pointerId);
    if (this.pointers.size < 2) this.pinch = null;
    if (wasPinch) {
      this.live = null;
      return;
    }
    const live = this.live;
    this.live = null;
    if (!live) return;
    const at = this._local(e);
    const { width, height } = this.size;
    const end = displayToImage(this.view, at[0], at[1]);
    switch (live.kind) {
      case "pan":
        if (live.outside && distance(at, live.start) <= TAP_SLOP) this._emit("outside", {});
        break;
      case "click":
        this._emit("point", { x: live.startImage[0], y: live.startImage[1], label: live.label, add: live.add && live.label === 1 });
        break;
      case "box":
        if (live.moved) this._emit("box", { p0: live.startImage, p1: end, add: live.add });
        break;
      case "brush":
      case "sketch":
        live.points.push(clampToImage(end[0], end[1], width, height));
        this._emit(live.kind === "brush" ? "stroke" : "sketch", {
          points: live.points,
          width: this.brushWidth / this.view.scale,
          add: live.add,
        });
        break;
      case "move":
        if (live.moved) this._emit("drag", { start: live.startImage, end: clampToImage(end[0], end[1], width, height) });
        break;
      default:
        break;
    }
    this.requestRender();
  }

  _cancel(e) {
    this._stopLongPress();
    this.pointers.delete(e.pointerId);
    if (this.pointers.size < 2) this.pinch = null;
    this.live = null;
    this.requestRender();
  }

  _wheel(e) {
    if (!this.size) return;
    e.preventDefault();
    const unit = e.deltaMode === 1 ? 16 : e.deltaMode === 2 ? this.cssH : 1;
    const factor = Math.exp(-e.deltaY * unit * (e.ctrlKey ? 0.01 : 0.0015));
    this.zoomBy(factor, this._local(e));
  }

  _emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  _emitView() {
    this._emit("view", { scale: this.view.scale });
  }

  // ---- drawing ----------------------------------------------------------------------

  render() {
    const ctx = this.ctx;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    if (!this.image) return;
    const { scale, x, y } = this.view;
    const { width, height } = this.size;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.save();
    ctx.shadowColor = "rgba(0,0,0,0.45)";
    ctx.shadowBlur = 24;
    ctx.fillStyle = "#000";
    ctx.fillRect(x, y, width * scale, height * scale);
    ctx.restore();
    ctx.imageSmoothingEnabled = scale < 2; // show real pixels when zoomed in
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(this.image, x, y, width * scale, height * scale);
    if (this.compare) {
      this._drawBefore(ctx); // a clean before/after: no selection, no marks
      return;
    }
    const drag = this.live && this.live.kind === "move" && this.live.moved ? this.live : null;
    if (this.mask) this._drawSelection(drag ? 0.2 : 1);
    if (drag && drag.ghost && drag.current) {
      const dx = (drag.current[0] - drag.startImage[0]) * scale;
      const dy = (drag.current[1] - drag.startImage[1]) * scale;
      ctx.save();
      ctx.beginPath();
      ctx.rect(x, y, width * scale, height * scale); // the object cannot leave the picture
      ctx.clip();
      ctx.globalAlpha = 0.9;
      ctx.drawImage(drag.ghost, x + dx, y + dy, width * scale, height * scale);
      ctx.restore();
    }
    this._drawMarks(ctx);
  }

  /** The image before over the left part of the current one, and the split line. */
  _drawBefore(ctx) {
    const { image, split } = this.compare;
    const { scale, x, y } = this.view;
    const w = this.size.width * scale;
    const h = this.size.height * scale;
    const cut = x + w * Math.min(Math.max(split, 0), 1);
    ctx.save();
    ctx.beginPath();
    ctx.rect(x, y, cut - x, h);
    ctx.clip();
    ctx.fillStyle = "#000";
    ctx.fillRect(x, y, w, h);
    // an image of another size (a crop's parent) is fitted into the same place
    const bw = image.naturalWidth || image.width;
    const bh = image.naturalHeight || image.height;
    const fit = Math.min(w / bw, h / bh);
    ctx.drawImage(image, x + (w - bw * fit) / 2, y + (h - bh * fit) / 2, bw * fit, bh * fit);
    ctx.restore();
    if (split > 0 && split < 1) {
      ctx.save();
      ctx.fillStyle = "#f8fafc";
      ctx.shadowColor = "rgba(0,0,0,0.6)";
      ctx.shadowBlur = 4;
      ctx.fillRect(cut - 1, y, 2, h);
      ctx.restore();
    }
  }

  _drawSelection(opacity) {
    const dpr = window.devicePixelRatio || 1;
    const { scale, x, y } = this.view;
    const { width, height } = this.size;
    const w = width * scale;
    const h = height * scale;
    const lc = this.layer.getContext("2d");
    lc.setTransform(1, 0, 0, 1, 0, 0);
    lc.clearRect(0, 0, this.layer.width, this.layer.height);
    lc.setTransform(dpr, 0, 0, dpr, 0, 0);
    lc.imageSmoothingEnabled = scale < 1;
    // outline: the mask shifted 2 px in 8 directions, minus the mask itself
    const ring = 2;
    for (const [ox, oy] of [[-1, -1], [0, -1], [1, -1], [-1, 0], [1, 0], [-1, 1], [0, 1], [1, 1]]) {
      lc.drawImage(this.mask, x + ox * ring, y + oy * ring, w, h);
    }
    lc.globalCompositeOperation = "source-in";
    lc.fillStyle = "#e0f2fe";
    lc.fillRect(0, 0, this.cssW, this.cssH);
    lc.globalCompositeOperation = "destination-out";
    lc.drawImage(this.mask, x, y, w, h);
    lc.globalCompositeOperation = "source-over";
    lc.globalAlpha = 0.45;
    lc.drawImage(this.mask, x, y, w, h);
    lc.globalAlpha = 1;
    const ctx = this.ctx;
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.globalAlpha = opacity;
    ctx.drawImage(this.layer, 0, 0);
    ctx.restore();
  }

  _drawMarks(ctx) {
    const { scale } = this.view;
    const toD = (p) => imageToDisplay(this.view, p[0], p[1]);
    const marks = this.marks;
    for (const stroke of marks.sketches) drawStroke(ctx, stroke.points.map(toD), stroke.width * scale, "rgba(244,114,182,0.95)");
    for (const stroke of marks.strokes) drawStroke(ctx, stroke.points.map(toD), stroke.width * scale, "rgba(250,204,21,0.55)");
    for (const box of marks.boxes) drawBox(ctx, toD([box.x0, box.y0]), toD([box.x1, box.y1]));
    for (const p of marks.points) drawPoint(ctx, toD([p.x, p.y]), p.label);
    const live = this.live;
    if (!live) return;
    if (live.kind === "box" && live.current) drawBox(ctx, live.start, toD(live.current));
    if (live.kind === "brush") drawStroke(ctx, live.points.map(toD), this.brushWidth, "rgba(250,204,21,0.55)");
    if (live.kind === "sketch") drawStroke(ctx, live.points.map(toD), this.brushWidth, "rgba(244,114,182,0.95)");
    if (live.kind === "click" && !live.moved) drawPoint(ctx, live.start, live.label, 0.6);
    if (live.kind === "move" && live.moved && live.current) drawArrow(ctx, live.start, toD(live.current));
  }
}

// ---- helpers ----------------------------------------------------------------------------

/** A canvas of the image's size: the tint colour where the mask is white, transparent elsewhere. */
export function tintedMask(maskImage, size) {
  const canvas = document.createElement("canvas");
  canvas.width = size.width;
  canvas.height = size.height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(maskImage, 0, 0, size.width, size.height);
  const pixels = ctx.getImageData(0, 0, size.width, size.height);
  const d = pixels.data;
  for (let i = 0; i < d.length; i += 4) {
    const on = d[i] > 127;
    d[i] = TINT[0];
    d[i + 1] = TINT[1];
    d[i + 2] = TINT[2];
    d[i + 3] = on ? 255 : 0;
  }
  ctx.putImageData(pixels, 0, 0);
  return canvas;
}

/** The selected pixels of the image alone (RGBA canvas of the image's size). */
function cutout(image, mask, size) {
  const canvas = document.createElement("canvas");
  canvas.width = size.width;
  canvas.height = size.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  ctx.globalCompositeOperation = "destination-in";
  ctx.drawImage(mask, 0, 0);
  return canvas;
}

function midpoint(a, b) {
  return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
}

function isTyping(e) {
  const t = e.target;
  return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable);
}

function drawPoint(ctx, [x, y], label, alpha = 1) {
  ctx.save();
  ctx.globalAlpha = alpha;
  ctx.beginPath();
  ctx.arc(x, y, 8, 0, Math.PI * 2);
  ctx.fillStyle = label === 1 ? "#22c55e" : "#ef4444";
  ctx.shadowColor = "rgba(0,0,0,0.6)";
  ctx.shadowBlur = 6;
  ctx.fill();
  ctx.shadowBlur = 0;
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#fff";
  ctx.stroke();
  ctx.beginPath();
  ctx.moveTo(x - 4, y);
  ctx.lineTo(x + 4, y);
  if (label === 1) {
    ctx.moveTo(x, y - 4);
    ctx.lineTo(x, y + 4);
  }
  ctx.stroke();
  ctx.restore();
}

function drawBox(ctx, a, b) {
  const x = Math.min(a[0], b[0]);
  const y = Math.min(a[1], b[1]);
  const w = Math.abs(a[0] - b[0]);
  const h = Math.abs(a[1] - b[1]);
  ctx.save();
  ctx.fillStyle = "rgba(56,189,248,0.10)";
  ctx.fillRect(x, y, w, h);
  ctx.lineWidth = 2;
  ctx.strokeStyle = "rgba(0,0,0,0.5)";
  ctx.strokeRect(x, y, w, h);
  ctx.setLineDash([6, 4]);
  ctx.strokeStyle = "#f8fafc";
  ctx.strokeRect(x, y, w, h);
  ctx.setLineDash([]);
  ctx.fillStyle = "#f8fafc";
  for (const [cx, cy] of [[x, y], [x + w, y], [x, y + h], [x + w, y + h]]) ctx.fillRect(cx - 3, cy - 3, 6, 6);
  ctx.restore();
}

function drawStroke(ctx, points, width, color) {
  if (points.length === 0) return;
  ctx.save();
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.strokeStyle = color;
  ctx.lineWidth = Math.max(width, 1);
  ctx.beginPath();
  ctx.moveTo(points[0][0], points[0][1]);
  if (points.length === 1) ctx.lineTo(points[0][0] + 0.01, points[0][1]);
  for (const p of points.slice(1)) ctx.lineTo(p[0], p[1]);
  ctx.stroke();
  ctx.restore();
}

function drawArrow(ctx, a, b) {
  const angle = Math.atan2(b[1] - a[1], b[0] - a[0]);
  ctx.save();
  ctx.strokeStyle = "#f8fafc";
  ctx.fillStyle = "#f8fafc";
  ctx.lineWidth = 2;
  ctx.setLineDash([6, 5]);
  ctx.beginPath();
  ctx.moveTo(a[0], a[1]);
  ctx.lineTo(b[0], b[1]);
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.beginPath();
  ctx.moveTo(b[0], b[1]);
  ctx.lineTo(b[0] - 12 * Math.cos(angle - 0.4), b[1] - 12 * Math.sin(angle - 0.4));
  ctx.lineTo(b[0] - 12 * Math.cos(angle + 0.4), b[1] - 12 * Math.sin(angle + 0.4));
  ctx.closePath();
  ctx.fill();
  ctx.restore();
}
