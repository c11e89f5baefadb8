/**
 * Undo and redo: the server's history is the one source of truth. Every gesture, tool call
 * and chat turn is one step there; `POST /api/sessions/{id}/undo` and `/redo` move its
 * pointer (the chat's "undo" moves the same one) and answer the session, which the page
 * then shows: image, selection and all. The page keeps no stack of its own.
 */

import { ApiError, api } from "./api.js";
import { emptyMarks } from "./marks.js";
import { applySession, readUndoState } from "./session.js";
import { page, state } from "./state.js";
import { toast } from "./ui.js";

async function step(direction) {
  if (!state.session || state.turn) return;
  await page.busy(direction === "undo" ? "Undoing…" : "Redoing…", async () => {
    let data;
    try {
      data = await (direction === "undo" ? api.undo(state.session) : api.redo(state.session));
    } catch (err) {
      // nothing (more) to undo or redo is not a failure: say so quietly
      if (err instanceof ApiError && err.status === 409) {
        toast(err.message);
        return;
      }
      throw err;
    }
    state.marks = emptyMarks();
    state.selectedFrom = null;
    await readUndoState();
    await applySession(data);
  });
}

export const undo = () => step("undo");
export const redo = () => step("redo");
