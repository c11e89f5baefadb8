/**
 * The marks of the current pointing: pure functions, no DOM.
 *
 * Marks are `{gestures: [Gesture], sketches: [Stroke]}`. `gestures` are the pointing
 * gestures of the current selection, one per object (a click gesture with its include and
 * exclude points, a box, or a stroke), in the order they were made; a plain gesture starts
 * a new list, an added one ("+ add" mode or Shift) joins it, an exclude point refines the
 * last click. `sketches` are the strokes drawn for generation. Gestures are the server's
 * shapes, in image pixels: `{type: "click", points: [{x, y, label}]}`, `{type: "box", x0,
 * y0, x1, y1}`, `{type: "stroke", points: [[x, y]], width}`.
 */

export const emptyMarks = () => ({ gestures: [], sketches: [] });

export function hasMarks(marks) {
  return marks.gestures.length + marks.sketches.length > 0;
}

/** Marks after a new pointing gesture: `add` keeps the earlier objects, otherwise they go. */
export function withGesture(marks, gesture, add) {
  return { ...marks, gestures: add ? [...marks.gestures, gesture] : [gesture] };
}

/**
 * Marks after an exclude point (label 0) on the last click: `{marks, gesture}`, or null when
 * the last gesture is not a click (an exclude point refines a clicked object).
 */
export function withExcludePoint(marks, point) {
  const last = marks.gestures[marks.gestures.length - 1];
  if (!last || last.type !== "click") return null;
  const gesture = { type: "click", points: [...last.points, { x: point.x, y: point.y, label: 0 }] };
  return { marks: { ...marks, gestures: [...marks.gestures.slice(0, -1), gesture] }, gesture };
}

export function withSketch(marks, stroke) {
  return { ...marks, sketches: [...marks.sketches, stroke] };
}

/** The latest pointing gesture (click, box or stroke), or null. */
export function lastGesture(marks) {
  return marks.gestures.length ? marks.gestures[marks.gestures.length - 1] : null;
}

/** What the stage draws: `{points, boxes, strokes, sketches}`. */
export function drawable(marks) {
  const out = { points: [], boxes: [], strokes: [], sketches: marks.sketches };
  for (const g of marks.gestures) {
    if (g.type === "click") out.points.push(...g.points);
    else if (g.type === "box") out.boxes.push(g);
    else if (g.type === "stroke") out.strokes.push(g);
  }
  return out;
}

/** One gesture in a few words: "click", "click − 1", "box 120×80", "stroke · 13 points". */
export function describeGesture(g) {
  if (!g) return "";
  if (g.type === "click") {
    const inc = g.points.filter((p) => p.label === 1).length;
    const exc = g.points.length - inc;
    return `click${inc > 1 ? ` · ${inc} points` : ""}${exc ? ` − ${exc}` : ""}`;
  }
  if (g.type === "box") return `box ${Math.round(g.x1 - g.x0)}×${Math.round(g.y1 - g.y0)}`;
  if (g.type === "stroke") return `stroke · ${g.points.length} points`;
  return g.type;
}

/**
 * All the gestures of the marks in a few words: "click", "3 strokes · 41 points",
 * "2 clicks + box 120×80".
 */
export function describeMarks(marks) {
  const gestures = marks.gestures;
  if (gestures.length === 0) return "";
  if (gestures.length === 1) return describeGesture(gestures[0]);
  const count = (type) => gestures.filter((g) => g.type === type);
  const parts = [];
  const clicks = count("click");
  if (clicks.length) parts.push(clicks.length === 1 ? describeGesture(clicks[0]) : `${clicks.length} clicks`);
  const boxes = count("box");
  if (boxes.length) parts.push(boxes.length === 1 ? describeGesture(boxes[0]) : `${boxes.length} boxes`);
  const strokes = count("stroke");
  if (strokes.length === 1) parts.push(describeGesture(strokes[0]));
  else if (strokes.length) {
    const points = strokes.reduce((n, s) => n + s.points.length, 0);
    parts.push(`${strokes.length} strokes · ${points} points`);
  }
  return parts.join(" + ");
}
