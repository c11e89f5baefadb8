"""The verb/noun parser of the auxiliary control: words -> intents, references, free arguments."""

from __future__ import annotations

import pytest

from igpt_server.controller.lexicon import INTENT_TOOLS, Intent, Ref, lemmas_of
from igpt_server.controller.parse import find_paths, parse_request


@pytest.mark.parametrize(
    ("message", "intent"),
    [
        ("remove it", Intent.REMOVE),
        ("Erase the text", Intent.REMOVE),
        ("please delete this", Intent.REMOVE),
        ("clean the table", Intent.REMOVE),
        ("get rid of the dog", Intent.REMOVE),
        ("I got rid of it already, now erased it again", Intent.REMOVE),
        ("replace this with a red car", Intent.REPLACE),
        ("swap it for a blue vase", Intent.REPLACE),
        ("change the dog to a monkey", Intent.REPLACE),
        ("turn the dog into a monkey", Intent.REPLACE),
        ("read the text", Intent.OCR),
        ("recognize the text in this image", Intent.OCR),
        ("what is written here", Intent.OCR),
        ("What's written on the poster?", Intent.OCR),
        ("what does this sign say?", Intent.OCR),
        ("what is in the selected region", Intent.QUESTION),
        ("how many dogs are there?", Intent.QUESTION),
        ("is there a cat?", Intent.QUESTION),
        ("what is this?", Intent.QUESTION),
        ("what is on the desk?", Intent.QUESTION),
        ("describe the image", Intent.DESCRIBE),
        ("find the bench", Intent.GROUND),
        ("where is the dog?", Intent.GROUND),
        ("locate the truck", Intent.GROUND),
        ("select the dog", Intent.SELECT),
        ("segment this", Intent.SELECT),
        ("pick that one", Intent.SELECT),
        ("segment everything", Intent.SELECT_ALL),
        ("move it to the left", Intent.MOVE),
        ("drag the dog", Intent.MOVE),
        ("now make it bigger", Intent.RESIZE),
        ("make it smaller", Intent.RESIZE),
        ("undo that", Intent.UNDO),
        ("undo the change", Intent.UNDO),
        ("put it back the way it was", Intent.UNDO),
        ("cut out the dog", Intent.EXTRACT),
        ("extract it", Intent.EXTRACT),
        ("draw a house from my sketch", Intent.GENERATE),
        ("generate a castle", Intent.GENERATE),
        ("paste the cut-out here", Intent.COMPOSE),
    ],
)
def test_verbs_name_the_intent(message: str, intent: Intent) -> None:
    assert parse_request(message).intent is intent


def test_lemmas_cover_inflections_and_irregular_forms() -> None:
    assert "remove" in lemmas_of("removed")
    assert "get" in lemmas_of("got")
    assert "write" in lemmas_of("written")
    assert "big" in lemmas_of("bigger")
    assert "dog" in lemmas_of("dogs")


@pytest.mark.parametrize("message", ["hello", "how are you?", "who are you?", "thanks!", "make it red/blue"])
def test_small_talk_names_no_intent(message: str) -> None:
    assert parse_request(message).intent is None


@pytest.mark.parametrize(
    ("message", "ref"),
    [
        ("remove it", Ref.selection),
        ("remove this", Ref.selection),
        ("remove the masked object", Ref.selection),
        ("what is in the selected region", Ref.selection),
        ("remove the other one too", Ref.other),
        ("describe the photo", Ref.image),
        ("erase the text", Ref.text),
        ("go back to the original", Ref.original),
        ("draw a house from my sketch", Ref.sketch),
        ("paste the cut-out here", Ref.material),
    ],
)
def test_nouns_name_argument_references(message: str, ref: Ref) -> None:
    assert parse_request(message).has(ref)


def test_a_reference_word_is_not_a_verb() -> None:
    """ "selected" is a reference here, not the verb "select"."""
    parsed = parse_request("what is in the selected region")
    assert Intent.SELECT not in {m.intent for m in parsed.intents}


def test_specific_phrases_beat_generic_question_words() -> None:
    parsed = parse_request("what is written here")
    assert [m.intent for m in parsed.intents][:2] == [Intent.OCR, Intent.QUESTION]


def test_the_object_of_the_verb() -> None:
    assert parse_request("find the bench").object_phrase == "bench"
    assert parse_request("get rid of the dog please").object_phrase == "dog"
    assert parse_request("change the dog to a monkey").object_phrase == "dog"
    assert parse_request("remove it").object_phrase is None
    assert parse_request("remove the selected object").object_phrase is None


@pytest.mark.parametrize(
    ("message", "replacement"),
    [
        ("replace this with a red car", "a red car"),
        ("change the dog to a monkey", "a monkey"),
        ("turn it into a Golden Retriever", "a Golden Retriever"),
        ("swap it for a blue vase please", "a blue vase"),
        ("draw a house from my sketch", "a house"),
        ("turn my sketch into a castle", "a castle"),
    ],
)
def test_the_replacement_keeps_the_users_words(message: str, replacement: str) -> None:
    assert parse_request(message).replacement == replacement


@pytest.mark.parametrize(
    ("message", "scale"),
    [
        ("now make it bigger", 1.25),
        ("make it smaller", 0.8),
        ("make it twice as big", 2.0),
        ("make it half the size", 0.5),
        ("make it much bigger", 1.5),
        ("make it 30% larger", 1.3),
        ("scale it 3x", 3.0),
    ],
)
def test_scale_words(message: str, scale: float) -> None:
    assert parse_request(message).scale == pytest.approx(scale)


def test_direction_and_distance() -> None:
    parsed = parse_request("move it to the left by 40 px")
    assert parsed.direction == (-1.0, 0.0) and parsed.distance_px == 40.0
    assert parse_request("move the cat up").direction == (0.0, -1.0)
    assert parse_request("remove it").direction is None


def test_paths_in_a_message_are_found_and_not_parsed_as_words() -> None:
    assert find_paths("read /etc/passwd please") == ["/etc/passwd"]
    assert find_paths("open ../../secret.txt") == ["../../secret.txt"]
    assert find_paths("remove image/3f9a0c1d_photo.png now") == ["image/3f9a0c1d_photo.png"]
    assert find_paths("make it red/blue") == []
    parsed = parse_request("remove image/3f9a0c1d_photo.png")
    assert parsed.paths == ["image/3f9a0c1d_photo.png"] and not parsed.has(Ref.image)


def test_every_intent_names_tools() -> None:
    assert set(INTENT_TOOLS) == set(Intent)
    assert INTENT_TOOLS[Intent.REMOVE] == ("remove",) and INTENT_TOOLS[Intent.OCR] == ("ocr",)


def test_a_huge_message_parses_quickly_enough_to_refuse_politely() -> None:
    parsed = parse_request("remove it " * 2000)
    assert parsed.intent is Intent.REMOVE and parsed.words == 4000


# ---- the vocabulary built from the registry's tools and WordNet ---------------------------


def test_every_declared_wordnet_sense_is_in_the_shipped_file() -> None:
    from igpt_server.controller.wordnet import declared_senses, missing_senses

    assert missing_senses(declared_senses()) == []  # else: python -m igpt_server.controller.wordnet


def test_wordnet_senses_widen_the_words_of_a_tool() -> None:
    from igpt_server.controller.lexicon import Vocabulary
    from igpt_server.controller.wordnet import lemmas
    from igpt_server.tooling.interface import ToolWords

    assert lemmas("erase.v.02") == ("erase", "rub out", "score out", "efface", "wipe off")
    vocabulary = Vocabulary.of([("move", ToolWords(verbs=("move",), senses=("shift.v.02",)), [])])
    parsed = parse_request("reposition the dog", vocabulary.tool_rules, vocabulary.values, vocabulary.verb_rules)
    assert parsed.intents[0].tool == "move" and parsed.intents[0].phrase == "reposition"


@pytest.mark.parametrize(
    ("message", "scope", "kept"),
    [
        ("erase everything but the dog", "complement", "dog"),
        ("blur everything except the red car", "complement", "red car"),
        ("blur the background", "complement", None),
        ("keep only the dog", "keep_only", "dog"),
        ("remove the dog", None, "dog"),
    ],
)
def test_scope_words_name_the_complement_and_what_is_kept(message: str, scope: str | None, kept: str | None) -> None:
    parsed = parse_request(message)
    assert (parsed.scope, parsed.object_phrase) == (scope, kept)


@pytest.mark.parametrize(
    ("message", "negated"),
    [("don't remove the dog", True), ("do not erase it", True), ("never delete this", True), ("remove the dog", False)],
)
def test_a_negated_verb_is_seen(message: str, negated: bool) -> None:
    assert parse_request(message).negated is negated
