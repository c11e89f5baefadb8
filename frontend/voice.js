/**
 * The microphone button: hold it to talk (release to send), or click it once to start and
 * once more to stop. Records with MediaRecorder and hands the clip over as a Blob.
 */

const HOLD_MS = 350; // a press longer than this is "hold to talk"
const MAX_MS = 60_000; // a clip stops by itself after a minute

const TYPES = [
  ["audio/webm;codecs=opus", "webm"],
  ["audio/webm", "webm"],
  ["audio/ogg;codecs=opus", "ogg"],
  ["audio/mp4", "m4a"],
];

/** The recording format this browser supports: `[mimeType, extension]`. */
export function recordingType() {
  if (typeof MediaRecorder === "undefined") return null;
  return TYPES.find(([type]) => MediaRecorder.isTypeSupported(type)) || ["", "webm"];
}

export class VoiceButton {
  /**
   * `handlers.onStart()`, `handlers.onTick(seconds)`, `handlers.onClip(blob, filename)`,
   * `handlers.onError(message)`.
   */
  constructor(button, handlers) {
    this.button = button;
    this.h = handlers;
    this.recorder = null;
    this.stream = null;
    this.pressedAt = 0;
    this.startedAt = 0;
    this.timer = 0;
    this.stopping = false;
    button.addEventListener("pointerdown", (e) => this._down(e));
    button.addEventListener("pointerup", () => this._up());
    button.addEventListener("pointercancel", () => this._up());
    button.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        if (this.recorder) this.stop();
        else this.start();
      }
    });
  }

  get recording() {
    return this.recorder !== null;
  }

  _down(e) {
    if (e.button !== 0) return;
    e.preventDefault();
    if (this.recorder) {
      this.stop(); // second click of toggle mode
      this.pressedAt = 0;
      return;
    }
    this.pressedAt = performance.now();
    this.start();
  }

  _up() {
    if (!this.pressedAt) return;
    const held = performance.now() - this.pressedAt;
    this.pressedAt = 0;
    if (held >= HOLD_MS && this.recorder) this.stop(); // hold-to-talk released
  }

  async start() {
    if (this.recorder || this.starting) return;
    const type = recordingType();
    if (!type) {
      this.h.onError("this browser cannot record audio (no MediaRecorder); type your message instead");
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      this.h.onError("the microphone is only available on https:// or http://localhost pages; type your message instead");
      return;
    }
    this.starting = true;
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      this.starting = false;
      this.h.onError(`the microphone could not be opened (${err.name}: ${err.message}); allow it in the browser's site settings`);
      return;
    }
    this.starting = false;
    const [mimeType, ext] = type;
    const chunks = [];
    const recorder = new MediaRecorder(this.stream, mimeType ? { mimeType } : undefined);
    recorder.addEventListener("dataavailable", (e) => {
      if (e.data && e.data.size) chunks.push(e.data);
    });
    recorder.addEventListener("stop", () => {
      const blob = new Blob(chunks, { type: recorder.mimeType || mimeType || "audio/webm" });
      this._release();
      if (blob.size === 0) this.h.onError("nothing was recorded; hold the button a little longer");
      else this.h.onClip(blob, `voice.${ext}`);
    });
    this.recorder = recorder;
    recorder.start(250);
    this.startedAt = performance.now();
    this.button.classList.add("recording");
    this.button.setAttribute("aria-pressed", "true");
    this.h.onStart();
    this.timer = setInterval(() => {
      const ms = performance.now() - this.startedAt;
      this.h.onTick(ms / 1000);
      if (ms > MAX_MS) this.stop();
    }, 200);
    // a press that ended while the microphone was opening was a click: keep recording (toggle mode)
  }

  stop() {
    if (!this.recorder || this.recorder.state === "inactive") return;
    clearInterval(this.timer);
    this.recorder.stop();
  }

  _release() {
    clearInterval(this.timer);
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
    this.recorder = null;
    this.button.classList.remove("recording");
    this.button.setAttribute("aria-pressed", "false");
  }
}
