/**
 * The selection's components: the objects a person added one by one ("+ add" or Shift).
 *
 * The server keeps one mask per selection (a gesture with `add: true` answers the union),
 * so the page remembers what each gesture added: a component's pixels are the new union
 * minus the selection before it. Components therefore never overlap and their union is the
 * selection. Removing one uploads the union of the others as a mask of the image
 * (`POST /files`, `kind=mask`, `parent=<image>`), which becomes the selection.
 *
 * Pixels are `Uint8Array`s of width*height, 1 where selected (row-major, image pixels).
 * Components are remembered per mask path, so undo and redo find them again.
 */

/** Selected pixels of a loaded mask image (white = selected) at `width` x `height`. */
export function maskPixels(maskImage, width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(maskImage, 0, 0, width, height);
  const data = ctx.getImageData(0, 0, width, height).data;
  const out = new Uint8Array(width * height);
  for (let i = 0; i < out.length; i++) out[i] = data[i * 4] > 127 ? 1 : 0;
  return out;
}

/** `a` without `b` (both width*height). */
export function subtract(a, b) {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] && !(b && b[i]) ? 1 : 0;
  return out;
}

/** The union of several pixel arrays of `length` pixels. */
export function union(parts, length) {
  const out = new Uint8Array(length);
  for (const p of parts) for (let i = 0; i < length; i++) if (p[i]) out[i] = 1;
  return out;
}

export function count(pixels) {
  let n = 0;
  for (let i = 0; i < pixels.length; i++) n += pixels[i];
  return n;
}

/**
 * A PNG blob of the pixels: opaque white where selected, transparent black elsewhere (a
 * browser writes RGBA; the server reads an RGBA mask by its alpha, a grey one by brightness).
 */
export function pixelsToPng(pixels, width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(width, height);
  for (let i = 0; i < pixels.length; i++) {
    const v = pixels[i] ? 255 : 0;
    img.data[i * 4] = img.data[i * 4 + 1] = img.data[i * 4 + 2] = v;
    img.data[i * 4 + 3] = v;
  }
  ctx.putImageData(img, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

/** The components of each selection mask the page has seen: `[{label, pixels, area}]`. */
export class Components {
  constructor() {
    this.byMask = new Map();
  }

  clear() {
    this.byMask.clear();
  }

  /** The components of mask `path`, or null when the page did not make it (one whole selection). */
  of(path) {
    return (path && this.byMask.get(path)) || null;
  }

  /**
   * Record the mask `path` (pixels `next`) that a gesture described by `label` made from the
   * selection `previous` (a mask path or null). `how`: "new" (the gesture's object alone),
   * "add" (joins the earlier components) or "refine" (the last component was redrawn).
   */
  record(path, next, previous, how, label) {
    const before = this.of(previous) || [];
    const kept = how === "new" ? [] : how === "refine" ? before.slice(0, -1) : before;
    const others = kept.length ? union(kept.map((c) => c.pixels), next.length) : null;
    const pixels = subtract(next, others);
    const components = [...kept, { label, pixels, area: count(pixels) }].filter((c) => c.area > 0);
    this.byMask.set(path, components);
    return components;
  }

  /** Record that mask `path` holds exactly `components` (after one was taken out). */
  set(path, components) {
    this.byMask.set(path, components);
  }
}
