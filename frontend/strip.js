/**
 * The strip of thumbnails: every image of the session in the order it was made, each tagged
 * with the tool that made it and the image it came from (its lineage); click one to go back.
 */

/** Images with their number (1-based, creation order) and the number of their parent image. */
export function lineage(artifacts) {
  const images = artifacts
    .filter((a) => a.kind === "image")
    .slice()
    .sort((a, b) => a.created_at - b.created_at);
  const number = new Map(images.map((a, i) => [a.path, i + 1]));
  const byPath = new Map(artifacts.map((a) => [a.path, a]));
  return images.map((a) => {
    // a result's parent may be a mask or another artifact: follow parents up to an image
    let parent = a.parent;
    const seen = new Set();
    while (parent && !number.has(parent) && byPath.has(parent) && !seen.has(parent)) {
      seen.add(parent);
      parent = byPath.get(parent).parent;
    }
    return { artifact: a, n: number.get(a.path), parentN: parent ? number.get(parent) || null : null };
  });
}

export class Strip {
  constructor(element, onPick) {
    this.el = element;
    this.onPick = onPick;
    this.key = "";
  }

  render(artifacts, currentPath) {
    const items = lineage(artifacts);
    const key = items.map((i) => i.artifact.path).join("|");
    if (key !== this.key) {
      this.key = key;
      this.el.replaceChildren(...items.map((item) => this._thumb(item)));
      const last = this.el.lastElementChild;
      if (last) last.scrollIntoView({ block: "nearest", inline: "end" });
    }
    for (const node of this.el.children) node.classList.toggle("current", node.dataset.path === currentPath);
    const current = this.el.querySelector(".thumb.current");
    if (current) current.scrollIntoView({ block: "nearest", inline: "nearest" });
  }

  _thumb({ artifact, n, parentN }) {
    const button = document.createElement("button");
    button.className = "thumb";
    button.dataset.path = artifact.path;
    button.dataset.n = String(n);
    const made = artifact.tool || "upload";
    button.title = `#${n} ${artifact.path}\n${made}${parentN ? ` from #${parentN}` : ""} · ${artifact.width}x${artifact.height}`;
    const img = document.createElement("img");
    img.src = artifact.url;
    img.alt = `image #${n}`;
    img.loading = "lazy";
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = `#${n}`;
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = parentN ? `${made} ← #${parentN}` : made;
    button.append(img, num, tag);
    button.addEventListener("click", () => this.onPick(artifact));
    button.addEventListener("mouseenter", () => this._highlight(parentN));
    button.addEventListener("mouseleave", () => this._highlight(null));
    return button;
  }

  _highlight(n) {
    for (const node of this.el.children) node.classList.toggle("parent-of-hover", n !== null && node.dataset.n === String(n));
  }
}
