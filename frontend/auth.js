/**
 * API keys, when the server asks for them (`GET /api/health` answers `auth: "keys"`).
 *
 * The key is kept in sessionStorage (gone when the tab closes), sent as
 * `Authorization: Bearer <key>` on every fetch (api.js), and set as the cookie `igpt_key`
 * (SameSite=Strict, path=/) so that `<img src>` of artifacts, which cannot carry a header,
 * works too. A 401 `auth_required` / `auth_invalid` opens the key dialog again.
 */

import { auth } from "./api.js";

const STORAGE = "igpt.key";

export function storedKey() {
  return sessionStorage.getItem(STORAGE);
}

export function rememberKey(key) {
  sessionStorage.setItem(STORAGE, key);
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `igpt_key=${encodeURIComponent(key)}; path=/; SameSite=Strict${secure}`;
}

export function forgetKey() {
  sessionStorage.removeItem(STORAGE);
  document.cookie = "igpt_key=; path=/; SameSite=Strict; max-age=0";
}

/**
 * Wire the key dialog (`dialog` holds a form with an input `[name=key]` and a `.auth-error`
 * line). Returns `ask(message)`: opens the dialog and resolves true when a key was given.
 */
export function setupAuth(dialog) {
  const input = dialog.querySelector("[name=key]");
  const note = dialog.querySelector(".auth-error");
  let pending = null;
  dialog.addEventListener("close", () => {
    const key = input.value.trim();
    const given = dialog.returnValue === "ok" && key !== "";
    if (given) rememberKey(key);
    input.value = "";
    if (pending) pending(given);
    pending = null;
  });
  const ask = (message = "") => {
    if (pending) return new Promise((resolve) => dialog.addEventListener("close", () => resolve(Boolean(storedKey())), { once: true }));
    note.textContent = message;
    note.hidden = !message;
    return new Promise((resolve) => {
      pending = resolve;
      dialog.showModal();
      input.focus();
    });
  };
  auth.key = storedKey;
  auth.onAuth = (error) => {
    forgetKey();
    return ask(error.message);
  };
  const key = storedKey();
  if (key) rememberKey(key); // the cookie follows the stored key (e.g. after a reload)
  return ask;
}
