/**
 * One chat turn over `POST /api/sessions/{id}/chat/stream`: reads the server-sent events and
 * hands them to the page. The events the server sends (igpt_server/api/chat.py):
 *
 *   progress {stage: "queued"|"loading"|"running", message, tool?, model?, position?, percent?}
 *   step     {tool, args, observation, recovered, chosen_by?}
 *   token    {text}                       a piece of the reply as the LLM writes it
 *   reply    {reply, artifacts, steps}    the whole turn, as the plain /chat route answers
 *   error    {error: {code, message, detail}}
 *   done     {}
 *
 * Aborting `signal` closes the stream, which cancels the turn on the server.
 */

import { api } from "./api.js";

/** A progress event in a few words: "Loading the model sd-inpaint… · 40 %". */
export function describeProgress(p) {
  let text = p.message || "";
  if (!text) {
    if (p.stage === "queued") text = p.position ? `Waiting in line (#${p.position})` : "Waiting in line";
    else if (p.stage === "loading") text = `Loading ${p.model || "a model"}`;
    else text = `Running ${p.tool || "a tool"}`;
  }
  if (p.stage === "queued" && p.position && !text.includes(String(p.position))) text += ` (#${p.position} in line)`;
  if (typeof p.percent === "number") text += ` · ${Math.round(p.percent)} %`;
  return text;
}

/**
 * Run one turn. `view` receives what happens: `progress(p)`, `step(step)`, `token(text)`
 * (the reply so far), `error(error)`. Resolves with the reply `{reply, artifacts, steps}`,
 * or null when the stream ended without one.
 */
export async function runTurn(session, body, signal, view) {
  let streamed = "";
  let final = null;
  for await (const { event, data } of api.chatStream(session, body, signal)) {
    if (event === "progress") view.progress(data);
    else if (event === "step") view.step(data);
    else if (event === "token") {
      streamed += data.text;
      view.token(streamed);
    } else if (event === "reply") final = data;
    else if (event === "error") view.error(data.error);
  }
  return final;
}
