/**
 * Before/after: the active image against the image it was made from (its parent, found
 * through masks), with a split slider (the before on the left) or, while a key is held,
 * the whole before. The stage draws it (Stage.setCompare); nothing changes on the server.
 */

import { parentImage } from "./exporter.js";
import { loadImage } from "./session.js";
import { page, state } from "./state.js";
import { toast } from "./ui.js";

const $ = (id) => document.getElementById(id);

/** Before/after against the image's parent: `split` 0..1 of the width shows the before. */
export async function showBefore(split) {
  const parent = state.image && parentImage(state.artifacts, state.image);
  if (!parent) {
    toast("This image was not made from another one: nothing to compare with");
    return false;
  }
  state.compare = { parent: parent.path, split };
  page.stage.setCompare({ image: await loadImage(parent.url), split });
  page.updateUi();
  return true;
}

export function hideBefore() {
  state.compare = null;
  page.stage.setCompare(null);
  page.updateUi();
}

export async function toggleCompare() {
  if (state.compare) hideBefore();
  else await showBefore(Number($("compare-split").value) / 100);
}

let holdingBefore = false;

/** The hold-to-compare key went down: show the whole before until it goes up. */
export async function holdBefore() {
  if (holdingBefore || !state.image) return;
  holdingBefore = true;
  const was = state.compare;
  if (await showBefore(1)) holdingBefore = { was };
  else holdingBefore = false;
}

export function releaseBefore() {
  if (!holdingBefore) return;
  const { was } = holdingBefore;
  holdingBefore = false;
  if (was) showBefore(was.split);
  else hideBefore();
}
