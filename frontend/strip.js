/**
 * The strip of thumbnails: every image and video of the session in the order it was made,
 * each tagged with the tool that made it and the item it came from (its lineage); click an
 * image to go back to it, a video to open it in the player.
 *
 * A video's thumbnail is the video itself, muted, without controls, loaded as metadata only
 * and seeked to a frame near its start (so the browser decodes just that frame: no server
 * route, no poster file), with a play mark and its duration.
 */

/** Kinds that get a thumbnail. */
const SHOWN = new Set(["image", "video"]);

/** Seconds as m:ss (a thumbnail's duration badge). */
export function shortClock(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const whole = Math.round(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

/** Images and videos with their number (1-based, creation order) and the number of their parent. */
export function lineage(artifacts) {
  const images = artifacts
    .filter((a) => SHOWN.has(a.kind))
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
    button.dataset.kind = artifact.kind;
    button.title = `#${n} ${artifact.path}\n${made}${parentN ? ` from #${parentN}` : ""} · ${artifact.width}x${artifact.height}`;
    const num = document.createElement("span");
    num.className = "num";
    num.textContent = `#${n}`;
    const tag = document.createElement("span");
    tag.className = "tag";
    tag.textContent = parentN ? `${made} ← #${parentN}` : made;
    if (artifact.kind === "video") {
      button.classList.add("video");
      button.title += " · click to play";
      button.append(...this._poster(artifact, n), num, tag);
    } else {
      const img = document.createElement("img");
      img.src = artifact.url;
      img.alt = `image #${n}`;
      img.loading = "lazy";
      button.append(img, num, tag);
    }
    button.addEventListener("click", () => this.onPick(artifact));
    button.addEventListener("mouseenter", () => this._highlight(parentN));
    button.addEventListener("mouseleave", () => this._highlight(null));
    return button;
  }

  /** A video's poster (its frame near the start), play mark and duration badge. */
  _poster(artifact, n) {
    const video = document.createElement("video");
    video.muted = true;
    video.playsInline = true;
    video.preload = "metadata";
    video.setAttribute("aria-label", `video #${n}`);
    video.src = artifact.url;
    const play = document.createElement("span");
    play.className = "play";
    play.textContent = "▶";
    play.setAttribute("aria-hidden", "true");
    const badge = document.createElement("span");
    badge.className = "duration";
    const known = artifact.meta && artifact.meta.duration_s;
    badge.textContent = shortClock(known);
    video.addEventListener("loadedmetadata", () => {
      if (Number.isFinite(video.duration)) badge.textContent = shortClock(video.duration);
      // a frame a little in (the very first is often black), decoded by seeking to it
      video.currentTime = Math.min(0.5, (video.duration || 0) / 10);
    });
    video.addEventListener("seeked", () => video.classList.add("ready"), { once: true });
    return [video, play, badge];
  }

  _highlight(n) {
    for (const node of this.el.children) node.classList.toggle("parent-of-hover", n !== null && node.dataset.n === String(n));
  }
}
