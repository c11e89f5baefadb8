"""The narration prompt: its worked examples (few-shot) and the script clean-up.

What the embedded LLM writes with it is checked (slowly) in test_video.py; how good that is
is written in :mod:`igpt_tools.video.script`'s docstring.
"""

from __future__ import annotations

import pytest

from igpt_prompts import load_prompt
from igpt_tools.video.script import MAX_WORDS, Facts, _clean, _prompt, examples


def test_the_examples_file_parses_and_each_example_is_a_short_script_on_its_facts() -> None:
    found = examples(load_prompt("narrate_examples"))
    assert len(found) >= 2
    for style, facts, script in found:
        assert style and facts and all(":" in line for line in facts)
        assert 3 <= len(script.split()) <= MAX_WORDS


def test_a_malformed_example_names_itself() -> None:
    with pytest.raises(ValueError, match="example 2"):
        examples("intro\n---\nstyle: funny\n- length: 3 seconds\nscript: Three seconds!\n---\nstyle: calm\n")


def test_the_prompt_shows_the_examples_before_the_clips_facts() -> None:
    facts = Facts(duration=10, shots=5, motion="lively, a lot moves", sound="silent (no sound track)", style="funny")
    messages = _prompt(facts)
    roles = [m["role"] for m in messages]
    pairs = len(examples(load_prompt("narrate_examples")))
    assert roles == ["system"] + ["user", "assistant"] * pairs + ["user"]
    assert "funny" in messages[0]["content"] and str(MAX_WORDS) in messages[0]["content"]
    assert "length: 10 seconds, 5 shots" in messages[-1]["content"]
    assert messages[-1]["content"].endswith("Write the funny voice-over now.")


def test_clean_drops_talk_about_the_voice_over_itself() -> None:
    assert _clean("The funny voice-over, just what I need. Ten seconds of bikes!") == "Ten seconds of bikes!"
    assert _clean("Voice-over: Ten seconds of bikes.") == "Ten seconds of bikes."
    assert _clean("A voice-over of ten seconds.") == "A voice-over of ten seconds."  # nothing else to keep
