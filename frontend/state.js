/**
 * The page's state, shared by its modules. The server's session is the truth (active image,
 * selection, history); this holds what the page shows of it and what the person is doing.
 *
 * `page` holds the page's parts once app.js has made them (stage, chat log, strip) and the
 * calls every module needs (`refresh`, `updateUi`, `busy`), so modules do not import app.js.
 */

import { emptyMarks } from "./marks.js";
import { Components } from "./selection.js";

export const state = {
  session: null,
  artifacts: [],
  image: null, // the active image artifact
  mask: null, // the active selection, when it is a mask of the active image
  shown: { image: null, mask: null }, // paths drawn on the stage
  marks: emptyMarks(),
  mode: "click",
  turn: null, // AbortController of the running chat turn
  progress: null, // the latest progress event of the current (or last) turn
  selectedFrom: null, // {mask, gesture}: the selection made from the latest gesture
  busy: 0,
  canUndo: null, // from the server's history; null when unknown
  canRedo: null,
  tools: [],
  components: new Components(),
  compare: null, // {parent, split} while comparing with the image before
};

export const page = {
  stage: null,
  log: null,
  strip: null,
  /** Read the session back and show it. */
  refresh: async () => {},
  /** Show the session JSON `data` (as GET /api/sessions/{id} answers). */
  apply: async () => {},
  updateUi: () => {},
  /** Run `fn` with the busy indicator; shows the server's error and resolves undefined on failure. */
  busy: async (_text, fn) => fn(),
};
