/**
 * The tools panel: every tool of this server (GET /api/tools), the ones that work here
 * first with their backend, then the others with the reason and what to configure.
 */

/** Fill `list` (a <ul>) with the tools: `[{name, description, available, backend, reason, gestures}]`. */
export function renderTools(list, tools) {
  const heading = (text) => {
    const li = document.createElement("li");
    li.className = "heading";
    li.textContent = text;
    return li;
  };
  const sorted = [...tools].sort((a, b) => Number(b.available) - Number(a.available) || a.name.localeCompare(b.name));
  const firstOff = sorted.findIndex((t) => !t.available);
  const items = [];
  sorted.forEach((tool, i) => {
    if (i === 0 && tool.available) items.push(heading("Ready on this server"));
    if (i === firstOff) items.push(heading("Not available here: what each one needs"));
    items.push(toolItem(tool));
  });
  list.replaceChildren(...items);
}

function toolItem(tool) {
  const li = document.createElement("li");
  li.className = tool.available ? "on" : "off";
  li.dataset.tool = tool.name;
  const row = document.createElement("div");
  row.className = "row";
  const dot = document.createElement("span");
  dot.className = "dot";
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = tool.name;
  const backend = document.createElement("span");
  backend.className = "backend";
  backend.textContent = tool.available ? `backend: ${tool.backend}` : "unavailable";
  row.append(dot, name, backend);
  li.append(row, line("desc", firstSentence(tool.description)));
  if (!tool.available && tool.reason) li.append(line("reason", tool.reason));
  if (tool.gestures && tool.gestures.length) li.append(line("gestures", `pointing: ${tool.gestures.join(", ")}`));
  return li;
}

function line(className, text) {
  const div = document.createElement("div");
  div.className = className;
  div.textContent = text;
  return div;
}

function firstSentence(text) {
  const t = (text || "").trim();
  const cut = t.search(/[.!?](\s|$)/);
  return cut > 0 ? t.slice(0, cut + 1) : t;
}
