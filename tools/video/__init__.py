"""Video as a first-class artifact: frames, highlights, voice-overs, objects followed through a clip.

Modules, one job each:

* :mod:`.clip`: streamed reading, writing and cutting (PyAV); the frame and time conventions;
* :mod:`.analysis`: shot cuts (PySceneDetect), motion, loudness; choosing a highlight;
* :mod:`.tracking`: following a mask through frames (OpenCV Lucas-Kanade + GrabCut);
* :mod:`.sam2_track`: the same with SAM 2's video predictor (full tier);
* :mod:`.effects`: blur, pixelate, remove, cut out on a mask;
* :mod:`.speech`, :mod:`.script`, :mod:`.voice`, :mod:`.tts`: what is said, the voice-over's text, its sound;
* the tools: :mod:`.frame`, :mod:`.highlight`, :mod:`.track`, :mod:`.narrate`, :mod:`.transcribe`.
"""

from __future__ import annotations

from igpt_server.tooling.interface import Tool


def video_tools() -> list[Tool]:
    """frame, highlight, track, narrate, transcribe, with their backends."""
    from igpt_tools.video import frame, highlight, narrate, track, transcribe
    from igpt_tools.video.common import PyAvBackend
    from igpt_tools.video.sam2_track import Sam2VideoBackend
    from igpt_tools.video.tts import VitsVoiceBackend
    from igpt_tools.video.voice import EspeakBackend

    return [
        frame.FrameTool([PyAvBackend()]),
        highlight.HighlightTool([PyAvBackend()]),
        track.TrackTool([Sam2VideoBackend(), PyAvBackend()]),
        narrate.NarrateTool([VitsVoiceBackend(), EspeakBackend()]),
        transcribe.TranscribeTool([transcribe.SpeechRecognizerBackend()]),
    ]
