/**
 * Export and compare: downloads made in the browser from what the stage shows, and the
 * image an image was made from (its "before").
 *
 *   the active image    PNG or JPEG: the stored bytes when the image already is one, else
 *                       converted in the browser (JPEG quality 0.92, on white where transparent)
 *   the selection       the mask as the server stores it (PNG, white = selected)
 *   a cut-out           transparent PNG of the selected pixels, cropped to their box
 *
 * Nothing here changes the session (no undo step); "Cut out" in the actions makes a
 * material on the server instead.
 */

import { api } from "./api.js";
import { needImage } from "./pointing.js";
import { page, state } from "./state.js";

const $ = (id) => document.getElementById(id);

/** The image artifact `image` was made from (following parents through masks), or null. */
export function parentImage(artifacts, image) {
  const byPath = new Map(artifacts.map((a) => [a.path, a]));
  const seen = new Set();
  let parent = image && image.parent;
  while (parent && byPath.has(parent) && !seen.has(parent)) {
    const artifact = byPath.get(parent);
    if (artifact.kind === "image") return artifact;
    seen.add(parent);
    parent = artifact.parent;
  }
  return null;
}

/** The file name for a download: the artifact's name without its hash prefix, with `ext`. */
export function downloadName(path, suffix, ext) {
  const base = path.split("/").pop().replace(/\.[^.]+$/, "").replace(/^[0-9a-f]{6,}_/, "");
  return `${base || "image"}${suffix}.${ext}`;
}

/** Save `blob` as `filename` (the browser's download). */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function canvasOf(width, height) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

function toBlob(canvas, type, quality) {
  return new Promise((resolve, reject) =>
    canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error(`could not encode ${type}`))), type, quality),
  );
}

/**
 * Decode image bytes to exact pixel values: no colour-profile or gamma conversion, no
 * premultiplied alpha (what `<img>` does for display would change the numbers).
 */
export function decode(blob) {
  return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

/** Image bytes (a Blob) as PNG or JPEG (`type` "image/png" | "image/jpeg"); kept as they are when already so. */
export async function encodeImage(blob, type) {
  if (blob.type === type) return blob;
  const image = await decode(blob);
  const canvas = canvasOf(image.width, image.height);
  const ctx = canvas.getContext("2d");
  if (type === "image/jpeg") {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  ctx.drawImage(image, 0, 0);
  return toBlob(canvas, type, type === "image/jpeg" ? 0.92 : undefined);
}

/**
 * The selected pixels of an image on transparency, cropped to their bounding box, as PNG.
 * `imageBlob` and `maskBlob` are the artifacts' bytes (the mask: white or opaque = selected,
 * the image's size). Rejects when the mask is empty.
 */
export async function encodeCutout(imageBlob, maskBlob) {
  const image = await decode(imageBlob);
  const mask = await decode(maskBlob);
  const width = image.width;
  const height = image.height;
  const canvas = canvasOf(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(mask, 0, 0, width, height);
  const alpha = ctx.getImageData(0, 0, width, height).data;
  ctx.clearRect(0, 0, width, height);
  ctx.drawImage(image, 0, 0);
  const pixels = ctx.getImageData(0, 0, width, height);
  let [x0, y0, x1, y1] = [width, height, -1, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const on = alpha[i + 3] > 127 && alpha[i] > 127;
      pixels.data[i + 3] = on ? pixels.data[i + 3] : 0;
      if (on) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
    }
  }
  if (x1 < 0) throw new Error("the selection is empty: nothing to cut out");
  const out = canvasOf(x1 - x0 + 1, y1 - y0 + 1);
  out.getContext("2d").putImageData(pixels, -x0, -y0, x0, y0, out.width, out.height);
  return toBlob(out, "image/png");
}

// ---- the Export menu's downloads ------------------------------------------------------------

/** Download the active image as `type` ("image/png" or "image/jpeg"). */
export async function exportImage(type) {
  if (!needImage()) return;
  $("export-menu").open = false;
  const ext = type === "image/png" ? "png" : "jpg";
  await page.busy("Preparing the download…", async () => {
    const blob = await encodeImage(await api.blob(state.image.url), type);
    saveBlob(blob, downloadName(state.image.path, "", ext));
  });
}

/** Download the selection as the server's mask PNG. */
export async function exportMask() {
  $("export-menu").open = false;
  if (!state.mask) return;
  await page.busy("Preparing the download…", async () => {
    saveBlob(await api.blob(state.mask.url), downloadName(state.image.path, "_mask", "png"));
  });
}

/** Download the selected pixels as a transparent PNG. */
export async function exportCutout() {
  $("export-menu").open = false;
  if (!state.mask) return;
  await page.busy("Cutting out…", async () => {
    const blob = await encodeCutout(await api.blob(state.image.url), await api.blob(state.mask.url));
    saveBlob(blob, downloadName(state.image.path, "_cutout", "png"));
  });
}
