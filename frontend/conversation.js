/**
 * Talking to the image: send a message (typed or spoken) with the current pointing, show
 * the turn's progress on the stage and in the chat, its steps and its reply, and Stop it.
 * Stop aborts the stream; closing it cancels the turn on the server.
 */

import { describeMarks } from "./marks.js";
import { chatGesture } from "./pointing.js";
import { page, state } from "./state.js";
import { describeProgress, runTurn } from "./turn.js";
import { autosize, busyPill } from "./ui.js";

const $ = (id) => document.getElementById(id);

/** Send `text` as one chat turn; resolves when the turn has ended (or was stopped). */
export async function send(text, { spoken = false } = {}) {
  const message = text.trim();
  if (!message || state.turn) return;
  const gesture = chatGesture();
  const body = { message };
  if (gesture && state.image) body.gesture = gesture;
  const pointing = [gesture ? describeMarks({ gestures: [gesture], sketches: [] }) : null, state.mask ? "selection" : null].filter(Boolean);
  const context = [spoken ? "spoken" : null, pointing.length ? `with ${pointing.join(" + ")}` : null].filter(Boolean);
  page.log.user(message, context.join(" · "));
  $("input").value = "";
  autosize($("input"));
  const controller = new AbortController();
  state.turn = controller;
  state.progress = null;
  page.updateUi();
  const shown = progressView();
  try {
    const final = await runTurn(state.session, body, controller.signal, {
      progress: (p) => {
        state.progress = p;
        shown.progress(p);
      },
      step: (step) => {
        page.log.step(step);
        shown.label(`Ran ${step.tool} · thinking`);
      },
      token: (streamed) => shown.token(streamed),
      error: (error) => page.log.error(error, "The server could not finish this turn"),
    });
    shown.done();
    if (final) page.log.assistant(final.reply, final.artifacts);
  } catch (err) {
    shown.done();
    if (err.name === "AbortError") page.log.note("Stopped", "The turn was stopped and the server cancels it: steps that had finished stay in the history, nothing else is made.");
    else page.log.error(err, "The turn failed");
  } finally {
    state.turn = null;
    page.updateUi();
  }
  try {
    await page.refresh(); // a new image replaces the view (same size: same zoom, to compare)
  } catch (err) {
    page.log.error(err);
  }
}

/** Stop the running turn (the Stop button, or Escape while a turn runs). */
export function stop() {
  if (state.turn) state.turn.abort();
}

/** The turn's progress: a line in the chat and the pill on the stage, with the seconds waited. */
function progressView() {
  const working = page.log.working("Thinking…");
  const started = performance.now();
  let text = "Thinking";
  let percent = null;
  let bubble = null;
  const show = () => {
    const seconds = Math.round((performance.now() - started) / 1000);
    working.set(`${text}…`, percent);
    busyPill.show(`${text} · ${seconds} s`, percent);
  };
  const tick = setInterval(show, 500);
  state.busy += 1;
  show();
  return {
    progress(p) {
      text = describeProgress(p).replace(/ · \d+ %$/, "");
      percent = typeof p.percent === "number" ? p.percent : null;
      show();
    },
    label(t) {
      text = t;
      percent = null;
      show();
    },
    token(streamed) {
      if (!bubble) bubble = page.log.assistant("");
      bubble.textContent = streamed;
    },
    done() {
      clearInterval(tick);
      working.remove();
      if (bubble) bubble.remove();
      state.busy = Math.max(0, state.busy - 1);
      if (state.busy === 0) busyPill.hide();
    },
  };
}
