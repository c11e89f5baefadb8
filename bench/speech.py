"""Speech benchmark: real-time factor and word error rate of the server's speech recognizer.

Clips: the fixtures (``tests/data``: jfk.flac and three spoken commands with known texts) and
20 editing commands rendered by espeak-ng (Debian package ``espeak-ng``) at one or more
speaking rates. Each clip goes through the server's own path: PyAV decoding to 16 kHz, the
speech gate, the backend (by default the embedded faster-whisper tiny.en, int8 on the CPU).

* RTF (real-time factor) = seconds spent transcribing / seconds of audio (below 1 is faster
  than real time); the median of ``--repeat`` runs after a warm-up; decoding is timed apart.
* WER = word edits / reference words, after lower-casing and dropping punctuation
  (:func:`igpt_server.speech.text.word_error_rate`); a group's WER pools its clips' edits.

    python bench/speech.py                         # embedded model, espeak at 130 and 175 wpm
    python bench/speech.py --model-dir /models     # the best model found there (see igpt_server.speech)
    python bench/speech.py --json speech.json --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from igpt_server.errors import IgptError  # noqa: E402
from igpt_server.models.pool import ModelPool  # noqa: E402
from igpt_server.settings import Settings  # noqa: E402
from igpt_server.speech import SpeechRecognizer  # noqa: E402
from igpt_server.speech.audio import SAMPLE_RATE, decode_audio  # noqa: E402
from igpt_server.speech.text import edit_distance, normalize_text  # noqa: E402

DATA = ROOT / "tests" / "data"

#: the fixture clips and what is said in them (tests/data/README.md)
FIXTURES = {
    "jfk.flac": "And so, my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country.",
    "change_the_dog_to_a_monkey.mp3": "Change the dog to a monkey.",
    "replace_with_a_sofa.mp3": "Replace with a sofa, high quality, detailed.",
    "the_bench.mp3": "The bench.",
}

#: requests a person says to the canvas page
COMMANDS = [
    "remove the masked object",
    "remove it",
    "erase the dog",
    "delete the text on the sign",
    "replace the dog with a cat",
    "change the bench into a sofa",
    "select the truck",
    "segment the person on the left",
    "what is written here",
    "read the text on the poster",
    "how many bags are in the trunk",
    "describe this image",
    "what color is the car",
    "find the dog",
    "detect all the people",
    "move it to the right",
    "make the sky blue",
    "generate a house from my sketch",
    "turn these strokes into a red car",
    "undo that",
]


@dataclass
class Result:
    group: str
    clip: str
    seconds: float
    decode_s: float
    transcribe_s: float
    rtf: float
    reference: str
    hypothesis: str
    edits: int
    words: int

    @property
    def wer(self) -> float:
        return self.edits / self.words if self.words else 0.0


def espeak(text: str, target: Path, speed: int) -> Path:
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(target), text], check=True, capture_output=True)
    return target


def measure(speech: SpeechRecognizer, group: str, clip: Path, reference: str, repeat: int) -> Result:
    start = time.perf_counter()
    audio = decode_audio(clip, max_seconds=3600)
    decode_s = time.perf_counter() - start
    times, hypothesis = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            hypothesis = speech.transcribe_audio(audio).text
        except IgptError as exc:  # no speech detected: an empty transcript
            hypothesis = f"<{exc.code}>" if exc.code != "no_speech" else ""
        times.append(time.perf_counter() - start)
    seconds = audio.size / SAMPLE_RATE
    transcribe_s = statistics.median(times)
    ref_words, hyp_words = normalize_text(reference).split(), normalize_text(hypothesis).split()
    return Result(
        group=group,
        clip=clip.name,
        seconds=round(seconds, 2),
        decode_s=round(decode_s, 4),
        transcribe_s=round(transcribe_s, 4),
        rtf=round(transcribe_s / seconds, 4),
        reference=reference,
        hypothesis=hypothesis,
        edits=edit_distance(ref_words, hyp_words),
        words=len(ref_words),
    )


def summary(results: list[Result]) -> dict[str, float]:
    audio = sum(r.seconds for r in results)
    busy = sum(r.transcribe_s for r in results)
    return {
        "clips": len(results),
        "audio_s": round(audio, 2),
        "rtf": round(busy / audio, 4) if audio else 0.0,
        "wer": round(sum(r.edits for r in results) / max(1, sum(r.words for r in results)), 4),
        "exact": sum(r.edits == 0 for r in results),
    }


def print_tables(results: list[Result], header: dict[str, object]) -> None:
    print(f"# speech benchmark: {header}")
    print()
    print("| group | clips | audio s | RTF | WER | exact |")
    print("| --- | --- | --- | --- | --- | --- |")
    groups = sorted({r.group for r in results}, key=[r.group for r in results].index)
    for group in [*groups, "all"]:
        rows = results if group == "all" else [r for r in results if r.group == group]
        s = summary(rows)
        print(f"| {group} | {s['clips']} | {s['audio_s']} | {s['rtf']:.3f} | {s['wer']:.1%} | {s['exact']} |")
    print()
    print("| group | clip | audio s | decode s | transcribe s | RTF | WER | transcript |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r.group} | {r.clip} | {r.seconds} | {r.decode_s:.3f} | {r.transcribe_s:.3f} | {r.rtf:.3f} | "
            f"{r.wer:.0%} | {r.hypothesis} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=None, help="IGPT_MODEL_DIR to pick the model from")
    parser.add_argument("--device", default="auto", help="speech device: auto, cpu, cuda:0")
    parser.add_argument("--speeds", type=int, nargs="*", default=[130, 175], help="espeak-ng rates (words/min)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per clip (median)")
    parser.add_argument("--json", type=Path, default=None, help="also write every result here")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]  # other work on the machine inflates the RTF: report it
    with tempfile.TemporaryDirectory(prefix="igpt-bench-speech-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", model_dir=args.model_dir, devices={"speech": args.device})
        speech = SpeechRecognizer(settings, ModelPool(settings))
        info = speech.info()
        if not info.available:
            sys.exit(f"speech is unavailable: {info.reason}")
        start = time.perf_counter()
        speech.run_model(decode_audio(DATA / "the_bench.mp3", max_seconds=60))  # load + warm-up
        load_s = time.perf_counter() - start
        (model,) = speech.pool.describe()

        results = [measure(speech, "fixtures", DATA / name, text, args.repeat) for name, text in FIXTURES.items()]
        if args.speeds and shutil.which("espeak-ng") is None:
            print("espeak-ng is not installed (apt-get install espeak-ng): skipping the rendered commands")
        elif args.speeds:
            for speed in args.speeds:
                for i, command in enumerate(COMMANDS):
                    clip = espeak(command, Path(tmp) / f"cmd{i:02d}_{speed}.wav", speed)
                    results.append(measure(speech, f"espeak {speed} wpm", clip, command, args.repeat))

    header: dict[str, object] = {
        "backend": info.backend,
        "model": info.model,
        "device": model.device,
        "dtype": model.dtype,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_and_warmup_s": round(load_s, 2),
        "load_average_start_end": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }
    print_tables(results, header)
    if args.json is not None:
        payload = {"header": header, "results": [asdict(r) | {"wer": r.wer} for r in results]}
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
