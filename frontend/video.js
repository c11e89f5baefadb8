/**
 * Video on the page: a player over the canvas with scrubbing and frame stepping, and video
 * results that play in the chat (the strip's video thumbnails, strip.js, open the player).
 *
 * Pausing on a frame and clicking the picture makes that frame the active image: the page
 * asks the server's `frame` tool for the frame at the player's time (the frame's meta keeps
 * the time and the video), then selects what was clicked on it with a click gesture in
 * image pixels. "Use this frame" does the first step alone.
 *
 * API (plain ES module, no dependencies beyond the page's `api`):
 *   isVideo(artifact)                      true for a video artifact
 *   videoElement(artifact, {controls})     a <video> of an artifact, for the chat
 *   new VideoPlayer(container)             builds its elements inside `container` (the stage)
 *     .open(artifact) / .close() / .time   show a video artifact, hide it, current time (s)
 *     events "point" {video, time, x, y}   a click on the paused picture, x/y in video pixels
 *            "frame" {video, time}         "Use this frame"
 *   attachVideo({container, api, session, refresh, onError})
 *     wires a player to the server: returns {player, openFile(file), show(artifact)}
 */

const STEP_KEYS = { ArrowLeft: -1, ArrowRight: 1, ",": -1, ".": 1 };

export function isVideo(artifact) {
  return Boolean(artifact && artifact.kind === "video");
}

/** A <video> element for a video artifact (muted autoplay off; `controls` on by default). */
export function videoElement(artifact, { controls = true } = {}) {
  const video = document.createElement("video");
  video.src = artifact.url;
  video.controls = controls;
  video.preload = "metadata";
  video.playsInline = true;
  video.className = "video-result";
  video.style.maxWidth = "100%";
  return video;
}

/** Seconds as m:ss.cc */
export function clock(seconds) {
  const m = Math.floor(seconds / 60);
  const s = seconds - 60 * m;
  return `${m}:${s.toFixed(2).padStart(5, "0")}`;
}

/** Video pixels under a pointer event on a <video> shown with object-fit: contain, or null. */
export function videoPoint(video, clientX, clientY) {
  const rect = video.getBoundingClientRect();
  const vw = video.videoWidth;
  const vh = video.videoHeight;
  if (!vw || !vh) return null;
  const scale = Math.min(rect.width / vw, rect.height / vh);
  const left = rect.left + (rect.width - vw * scale) / 2;
  const top = rect.top + (rect.height - vh * scale) / 2;
  const x = (clientX - left) / scale;
  const y = (clientY - top) / scale;
  if (x < 0 || y < 0 || x >= vw || y >= vh) return null;
  return { x: Math.round(x), y: Math.round(y) };
}

function el(tag, props = {}, style = {}) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  Object.assign(node.style, style);
  return node;
}

export class VideoPlayer extends EventTarget {
  constructor(container) {
    super();
    this.artifact = null;
    this.root = el("div", { className: "video-player", hidden: true }, {
      position: "absolute", inset: "0", display: "flex", flexDirection: "column", background: "#000", zIndex: "5",
    });
    this.video = el("video", { playsInline: true, preload: "auto" }, {
      flex: "1", minHeight: "0", width: "100%", objectFit: "contain", cursor: "crosshair",
    });
    const bar = el("div", { className: "video-bar" }, {
      display: "flex", gap: "6px", alignItems: "center", padding: "6px", background: "rgba(0,0,0,.75)", color: "#fff",
    });
    this.playBtn = el("button", { className: "btn", textContent: "Play", title: "Play / pause (space)" });
    this.backBtn = el("button", { className: "btn", textContent: "◀", title: "One frame back (,)" });
    this.nextBtn = el("button", { className: "btn", textContent: "▶", title: "One frame forward (.)" });
    this.scrub = el("input", { type: "range", min: "0", max: "0", step: "0.001", value: "0" }, { flex: "1" });
    this.scrub.setAttribute("aria-label", "Position in the video");
    this.label = el("span", { className: "video-time", textContent: "0:00.00" }, { fontVariantNumeric: "tabular-nums" });
    this.useBtn = el("button", { className: "btn", textContent: "Use this frame", title: "Make the paused frame the active image" });
    this.closeBtn = el("button", { className: "btn", textContent: "✕", title: "Close the player" });
    bar.append(this.playBtn, this.backBtn, this.nextBtn, this.scrub, this.label, this.useBtn, this.closeBtn);
    this.root.append(this.video, bar);
    container.append(this.root);
    this._bind();
  }

  get time() {
    return this.video.currentTime;
  }

  get fps() {
    return (this.artifact && this.artifact.meta && this.artifact.meta.fps) || 25;
  }

  open(artifact) {
    this.artifact = artifact;
    this.video.src = artifact.url;
    this.root.hidden = false;
    this.root.style.display = "flex";
    this.scrub.step = String(1 / this.fps);
  }

  close() {
    this.video.pause();
    this.root.hidden = true;
    this.root.style.display = "none";
  }

  /** Move by `frames` frames (negative: back); pauses first. */
  step(frames) {
    this.video.pause();
    const duration = this.video.duration || 0;
    this.video.currentTime = Math.min(Math.max(0, this.video.currentTime + frames / this.fps), duration);
  }

  _emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail }));
  }

  _bind() {
    const v = this.video;
    v.addEventListener("loadedmetadata", () => {
      this.scrub.max = String(v.duration || 0);
    });
    v.addEventListener("timeupdate", () => {
      this.scrub.value = String(v.currentTime);
      this.label.textContent = clock(v.currentTime);
    });
    v.addEventListener("play", () => (this.playBtn.textContent = "Pause"));
    v.addEventListener("pause", () => (this.playBtn.textContent = "Play"));
    this.playBtn.addEventListener("click", () => (v.paused ? v.play() : v.pause()));
    this.backBtn.addEventListener("click", () => this.step(-1));
    this.nextBtn.addEventListener("click", () => this.step(1));
    this.scrub.addEventListener("input", () => {
      v.pause();
      v.currentTime = Number(this.scrub.value);
    });
    this.closeBtn.addEventListener("click", () => this.close());
    this.useBtn.addEventListener("click", () => {
      v.pause();
      this._emit("frame", { video: this.artifact.path, time: v.currentTime });
    });
    v.addEventListener("click", (e) => {
      if (!v.paused) {
        v.pause();
        return;
      }
      const point = videoPoint(v, e.clientX, e.clientY);
      if (point) this._emit("point", { video: this.artifact.path, time: v.currentTime, ...point });
    });
    this.root.addEventListener("keydown", (e) => {
      if (e.key in STEP_KEYS) {
        e.preventDefault();
        this.step(STEP_KEYS[e.key]);
      } else if (e.key === " ") {
        e.preventDefault();
        v.paused ? v.play() : v.pause();
      }
    });
    this.root.tabIndex = 0;
  }
}

/**
 * Wire a player to the server. `api` is the page's api object, `session()` the session id,
 * `refresh()` re-reads and redraws the session, `onError(err)` shows an error.
 */
export function attachVideo({ container, api, session, refresh, onError }) {
  const player = new VideoPlayer(container);

  async function takeFrame(video, time) {
    const result = await api.callTool(session(), "frame", { video_path: video, time: Number(time.toFixed(3)) });
    return result.artifacts[0];
  }

  player.addEventListener("frame", async (e) => {
    try {
      await takeFrame(e.detail.video, e.detail.time);
      player.close();
      await refresh();
    } catch (err) {
      onError(err);
    }
  });

  player.addEventListener("point", async (e) => {
    const { video, time, x, y } = e.detail;
    try {
      const frame = await takeFrame(video, time);
      player.close();
      await api.gesture(session(), {
        gesture: { type: "click", points: [{ x, y, label: 1 }] },
        intent: "select",
        image: frame.path,
        add: false,
      });
      await refresh();
    } catch (err) {
      onError(err);
    }
  });

  async function openFile(file) {
    const artifact = await api.upload(session(), file, file.name);
    if (isVideo(artifact)) player.open(artifact);
    await refresh();
    return artifact;
  }

  return { player, openFile, show: (artifact) => player.open(artifact) };
}
