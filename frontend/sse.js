/**
 * Server-sent events read from a fetch() body (the chat stream is a POST, so EventSource
 * cannot be used). Pure parsing plus one async generator over a ReadableStream.
 */

/**
 * Parse the complete events at the start of `buffer` (text). Returns
 * `{events: [{event, data}], rest}` where `rest` is the unfinished tail to keep.
 * `data` is the JSON-decoded payload when it is JSON, the raw text otherwise;
 * `event` defaults to "message" as in the SSE specification.
 */
export function parseEvents(buffer) {
  const events = [];
  // a "\r" at the very end may be the first half of "\r\n": keep it raw for the next chunk
  const held = buffer.endsWith("\r") ? "\r" : "";
  const normalized = (held ? buffer.slice(0, -1) : buffer).replace(/\r\n?/g, "\n");
  const blocks = normalized.split("\n\n");
  const rest = blocks.pop() + held;
  for (const block of blocks) {
    const event = parseBlock(block);
    if (event) events.push(event);
  }
  return { events, rest };
}

function parseBlock(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0 && name === "message") return null;
  const text = data.join("\n");
  let payload = text;
  try {
    payload = text === "" ? null : JSON.parse(text);
  } catch {
    payload = text;
  }
  return { event: name, data: payload };
}

/** Yield `{event, data}` for each event of a streamed response body. */
export async function* readEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const { events, rest } = parseEvents(buffer);
    buffer = rest;
    yield* events;
  }
  const { events } = parseEvents(buffer + "\n\n");
  yield* events;
}
