/**
 * One-step actions beside the selection: each is one direct tool call
 * (`POST /api/tools/{name}` with `{"session", "args"}`, no LLM), shown in the chat with the
 * same steps view as a chat turn, and one undo step on the server.
 *
 *   Erase            remove   (image_path, mask_path)                   Delete / Backspace
 *   Cut out          extract  (image_path, mask_path): a transparent material   K
 *   Crop             crop     (image_path, mask_path): to the selection's box   R
 *   Blur background  adjust   (image_path, mask_path, effect blur, region background)  G
 *   Replace...       replace  (image_path, mask_path, prompt): shown only where available  E
 *
 * An action whose tool this server lacks is greyed, with the server's reason on hover
 * (from `GET /api/tools`).
 */

import { api } from "./api.js";
import { emptyMarks } from "./marks.js";
import { needImage } from "./pointing.js";
import { page, state } from "./state.js";
import { toast } from "./ui.js";

const $ = (id) => document.getElementById(id);

export const ACTIONS = [
  { id: "erase", label: "Erase", tool: "remove", keys: ["Delete", "Backspace"], hint: "Erase the selection and fill the hole" },
  { id: "cutout", label: "Cut out", tool: "extract", keys: ["k"], hint: "Cut the selection out as a transparent material" },
  { id: "crop", label: "Crop", tool: "crop", keys: ["r"], hint: "Crop the image to the selection" },
  {
    id: "blur",
    label: "Blur background",
    tool: "adjust",
    keys: ["g"],
    hint: "Blur everything but the selection",
    args: { effect: "blur", region: "background" },
  },
  { id: "replace", label: "Replace…", tool: "replace", keys: ["e"], hint: "Paint something else into the selection", prompt: true },
];

/** `{available, reason}` of tool `name` from the `GET /api/tools` list. */
export function availability(tools, name) {
  if (tools.length === 0) return { available: true, reason: "" }; // not listed yet
  const tool = tools.find((t) => t.name === name);
  if (!tool) return { available: false, reason: `this server has no '${name}' tool` };
  return { available: Boolean(tool.available), reason: tool.reason || "" };
}

/** The arguments of an action on `image` with selection `mask` (artifact paths). */
export function actionArgs(action, image, mask, prompt = null) {
  const args = { image_path: image, mask_path: mask, ...(action.args || {}) };
  if (action.prompt) args.prompt = prompt;
  return args;
}

/** The action a key press asks for (no modifier keys), or null. */
export function actionForKey(key) {
  const k = key.length === 1 ? key.toLowerCase() : key;
  return ACTIONS.find((a) => a.keys.includes(k)) || null;
}

/**
 * Run `action` on the active image and selection; Replace… first asks for its prompt. The
 * call is shown as a step in the chat, its new images and materials as a note.
 */
export async function runAction(action, prompt = null) {
  if (!needImage()) return;
  if (!state.mask) {
    toast(`${action.label}: select something first (click it)`);
    return;
  }
  const { available, reason } = availability(state.tools, action.tool);
  if (!available) {
    toast(`${action.label} is not available on this server: ${reason}`, true);
    return;
  }
  if (action.prompt && !prompt) {
    $("replace-form").hidden = false;
    $("replace-prompt").focus();
    return;
  }
  const args = actionArgs(action, state.image.path, state.mask.path, prompt);
  await page.busy(`${action.label.replace("…", "")}…`, async () => {
    const out = await api.callTool(state.session, action.tool, args);
    page.log.step({ tool: out.tool, args, observation: out.text, recovered: [], chosen_by: "you" });
    const made = out.artifacts.filter((a) => a.kind === "image" || a.kind === "material");
    if (made.length) page.log.note(action.label.replace("…", ""), `${out.backend}: ${made.map((a) => a.path).join(", ")}`, made);
    state.marks = emptyMarks();
    await page.refresh();
  });
}
