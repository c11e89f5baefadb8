/**
 * Display <-> image coordinates and gesture shapes. Pure functions, no DOM.
 *
 * A view is `{scale, x, y}`: image pixel (ix, iy) is drawn at display pixel
 * (x + ix * scale, y + iy * scale), display pixels being CSS pixels from the top-left
 * corner of the stage canvas. Image coordinates run from (0, 0), the top-left corner of
 * the top-left pixel, to (width, height), as the server's gestures expect; x grows to the
 * right and y downwards. Nothing is rounded: a point converts exactly at any zoom.
 */

export const MIN_SCALE = 0.02;
export const MAX_SCALE = 32;

/** The view that shows the whole image centred in a viewW x viewH area, `padding` px free around it. */
export function fitView(imageW, imageH, viewW, viewH, padding = 0) {
  if (!(imageW > 0 && imageH > 0)) throw new RangeError(`image size must be positive, got ${imageW}x${imageH}`);
  const availW = Math.max(viewW - 2 * padding, 1);
  const availH = Math.max(viewH - 2 * padding, 1);
  const scale = clamp(Math.min(availW / imageW, availH / imageH), MIN_SCALE, MAX_SCALE);
  return { scale, x: (viewW - imageW * scale) / 2, y: (viewH - imageH * scale) / 2 };
}

/** Display pixel -> image pixel: `[ix, iy]`. */
export function displayToImage(view, dx, dy) {
  return [(dx - view.x) / view.scale, (dy - view.y) / view.scale];
}

/** Image pixel -> display pixel: `[dx, dy]`. */
export function imageToDisplay(view, ix, iy) {
  return [view.x + ix * view.scale, view.y + iy * view.scale];
}

/** A pointer event's client position -> display pixel, given the canvas' bounding rect. */
export function clientToDisplay(rect, clientX, clientY) {
  return [clientX - rect.left, clientY - rect.top];
}

/**
 * The view zoomed by `factor` around display point (dx, dy): the image point under it stays
 * under it. The scale is kept within [minScale, maxScale].
 */
export function zoomAt(view, factor, dx, dy, minScale = MIN_SCALE, maxScale = MAX_SCALE) {
  const scale = clamp(view.scale * factor, minScale, maxScale);
  const [ix, iy] = displayToImage(view, dx, dy);
  return { scale, x: dx - ix * scale, y: dy - iy * scale };
}

/** The view moved by (ddx, ddy) display pixels. */
export function panBy(view, ddx, ddy) {
  return { scale: view.scale, x: view.x + ddx, y: view.y + ddy };
}

/** Whether image point (ix, iy) lies on the image (edges included). */
export function insideImage(ix, iy, width, height) {
  return ix >= 0 && iy >= 0 && ix <= width && iy <= height;
}

/** Image point clamped onto the image: `[x, y]` within [0, width] x [0, height]. */
export function clampToImage(ix, iy, width, height) {
  return [clamp(ix, 0, width), clamp(iy, 0, height)];
}

/**
 * A box gesture from two image points (any corners, any order), clamped to the image.
 * Returns null when the box is under one pixel wide or high (the server refuses those).
 */
export function boxGesture(p0, p1, width, height) {
  const [ax, ay] = clampToImage(p0[0], p0[1], width, height);
  const [bx, by] = clampToImage(p1[0], p1[1], width, height);
  const box = { type: "box", x0: Math.min(ax, bx), y0: Math.min(ay, by), x1: Math.max(ax, bx), y1: Math.max(ay, by) };
  return box.x1 - box.x0 < 1 || box.y1 - box.y0 < 1 ? null : box;
}

/** A click gesture from points `[{x, y, label}]` (label 1 include, 0 exclude); null without an include point. */
export function clickGesture(points) {
  if (!points.some((p) => p.label === 1)) return null;
  return { type: "click", points: points.map((p) => ({ x: p.x, y: p.y, label: p.label })) };
}

/**
 * A stroke gesture from image points, `width` in image pixels. Points closer than
 * `minStep` image pixels to the previous kept one are dropped (the last point is always
 * kept), and the result never exceeds `maxPoints` (the server's limit is 4096).
 */
export function strokeGesture(points, width, minStep = 0.5, maxPoints = 4096) {
  if (points.length === 0) return null;
  let kept = [points[0]];
  for (let i = 1; i < points.length; i++) {
    const last = kept[kept.length - 1];
    if (Math.hypot(points[i][0] - last[0], points[i][1] - last[1]) >= minStep) kept.push(points[i]);
  }
  const end = points[points.length - 1];
  if (kept[kept.length - 1] !== end && (end[0] !== kept[kept.length - 1][0] || end[1] !== kept[kept.length - 1][1])) {
    kept.push(end);
  }
  if (kept.length > maxPoints) {
    const step = (kept.length - 1) / (maxPoints - 1);
    kept = Array.from({ length: maxPoints }, (_, k) => kept[Math.round(k * step)]);
  }
  return { type: "stroke", points: kept.map((p) => [p[0], p[1]]), width };
}

/** A drag gesture from image points `start` to `end`. */
export function dragGesture(start, end) {
  return { type: "drag", start: [start[0], start[1]], end: [end[0], end[1]] };
}

/** Distance in display pixels between two display points. */
export function distance(a, b) {
  return Math.hypot(a[0] - b[0], a[1] - b[1]);
}

export function clamp(value, lo, hi) {
  return Math.min(Math.max(value, lo), hi);
}
