"""The lexicon of the auxiliary control: which words name which tool, and which nouns name
which argument.

Everything here is data plus a tokenizer that keeps character offsets and lemmatizes each
word with ``lemminflect`` (every lemma of every part of speech is kept, so "removed",
"got rid of" and "what's written" match "remove", "get rid of" and "what be write").

* :data:`VERB_RULES` map lemma phrases to an :class:`Intent` with a weight (longer and less
  ambiguous phrases weigh more). ``*`` in a phrase skips zero to three words:
  ``what * say`` matches "what does this sign say".
* :data:`INTENT_TOOLS` map an intent to tool NAMES in order of preference; the controller
  keeps the first one the registry has (so the lexicon works with whatever is registered).
* :data:`REF_RULES` map noun phrases to argument references: "it", "this", "the masked
  object", "the selection" -> the active selection; "image", "photo" -> the active image;
  "the other one" -> the other mask; "text", "sign", "words" -> written text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class Intent(StrEnum):
    REMOVE = "remove"
    REPLACE = "replace"
    OCR = "ocr"
    QUESTION = "question"
    DESCRIBE = "describe"
    GROUND = "ground"
    SELECT = "select"
    SELECT_ALL = "select_all"
    MOVE = "move"
    RESIZE = "resize"
    UNDO = "undo"
    REDO = "redo"
    EXTRACT = "extract"
    GENERATE = "generate"
    COMPOSE = "compose"
    TOOL = "tool"  # a tool's own words (ToolWords): the match names the tool


class Ref(StrEnum):
    """What a noun of the request points at."""

    selection = "selection"  # it, this, the masked object, the selection, the region, here
    image = "image"  # image, photo, picture
    other = "other"  # the other one
    text = "text"  # text, words, sign, writing
    original = "original"  # the original / first image
    sketch = "sketch"  # my sketch, the drawing, the scribble
    material = "material"  # the cut-out, the material


#: intent -> tool names, best first (the first one the registry has is used)
INTENT_TOOLS: dict[Intent, tuple[str, ...]] = {
    Intent.REMOVE: ("remove",),
    Intent.REPLACE: ("replace",),
    Intent.OCR: ("ocr",),
    Intent.QUESTION: ("vqa",),
    Intent.DESCRIBE: ("vqa", "caption"),
    Intent.GROUND: ("ground", "ground_and_segment"),
    Intent.SELECT: ("segment", "ground_and_segment"),
    Intent.SELECT_ALL: ("segment_everything",),
    Intent.MOVE: ("move",),
    Intent.RESIZE: ("move",),
    Intent.UNDO: ("undo",),
    Intent.REDO: ("redo",),
    Intent.EXTRACT: ("extract",),
    Intent.GENERATE: ("generate",),
    Intent.COMPOSE: ("compose",),
    Intent.TOOL: (),
}


@dataclass(frozen=True)
class VerbRule:
    phrase: tuple[str, ...]
    intent: Intent
    weight: float


def _rules(intent: Intent, weight: float, *phrases: str) -> list[VerbRule]:
    return [VerbRule(tuple(p.split()), intent, weight) for p in phrases]


#: lemma phrases -> intent. Weights: 2 for a plain verb, 3+ for a specific phrase, 1 or
#: less for a weak hint (a bare question word).
VERB_RULES: list[VerbRule] = [
    *_rules(Intent.REMOVE, 2, "remove", "erase", "delete", "clean", "wipe", "eliminate", "inpaint"),
    *_rules(Intent.REMOVE, 3, "get rid of", "take away", "take out", "clean up", "clear out", "rub out"),
    *_rules(Intent.REMOVE, 3, "make * disappear", "make * vanish", "make * go away", "wipe out", "paint out"),
    # everyday idioms of photo retouching ("take the dog out of the picture", "I want this gone")
    *_rules(Intent.REMOVE, 3, "take * out", "get * out", "rub * out", "scrub * out", "retouch * out", "edit * out"),
    *_rules(Intent.REMOVE, 3, "paint over", "want * gone", "be gone", "lose"),
    *_rules(Intent.REMOVE, 4, "don t want", "do not want"),
    *_rules(Intent.REPLACE, 2, "replace", "swap", "change", "substitute", "transform", "exchange"),
    *_rules(Intent.REPLACE, 3, "turn * into", "make * into", "change * into", "change * to", "replace * with"),
    *_rules(Intent.REPLACE, 3, "put * where"),
    *_rules(Intent.OCR, 2, "read", "recognize", "recognise", "ocr", "transcribe"),
    *_rules(Intent.OCR, 4, "what * say", "what be write", "what * write", "what be the text", "what text"),
    *_rules(Intent.OCR, 4, "read * text", "recognize * text", "recognise * text", "what do * read"),
    *_rules(Intent.OCR, 4, "copy * text", "copy * words", "get * text"),
    *_rules(Intent.QUESTION, 1, "what", "which", "who", "why", "how", "whose"),
    *_rules(Intent.QUESTION, 3, "how many", "be there", "what be in", "what kind", "what color", "what colour"),
    *_rules(Intent.QUESTION, 3, "tell me about", "what be this", "what be that", "what be it", "count"),
    *_rules(Intent.QUESTION, 3, "be it", "be this", "be that", "do it", "do this", "can you see"),
    *_rules(Intent.DESCRIBE, 3, "describe", "what be in the image", "what be in the photo"),
    *_rules(Intent.DESCRIBE, 1.5, "caption"),
    *_rules(Intent.DESCRIBE, 4, "what be in the picture", "what do * show", "what be happen"),
    *_rules(Intent.GROUND, 2, "find", "detect", "locate", "spot", "search"),
    *_rules(Intent.GROUND, 3, "where be", "look for", "point out", "show me where"),
    *_rules(Intent.SELECT, 2, "select", "segment", "pick", "outline", "highlight", "choose", "mask"),
    *_rules(Intent.SELECT_ALL, 5, "segment everything", "select everything", "segment all", "every object"),
    *_rules(Intent.SELECT_ALL, 5, "all the object", "all object", "everything in the image"),
    *_rules(Intent.MOVE, 2, "move", "drag", "shift", "slide", "push", "nudge", "relocate"),
    *_rules(Intent.MOVE, 3, "put * to the", "put * on the", "put * at the", "put * further", "move * over"),
    *_rules(Intent.MOVE, 2, "scoot"),
    *_rules(Intent.RESIZE, 1.5, "big", "large", "small", "tiny", "huge"),
    *_rules(Intent.RESIZE, 3, "enlarge", "grow", "shrink", "resize", "scale", "make * big", "make * small"),
    *_rules(Intent.RESIZE, 3, "blow * up"),
    *_rules(Intent.RESIZE, 3, "bigger", "smaller", "larger", "double the size", "half the size"),
    *_rules(Intent.UNDO, 4, "undo", "revert", "go back", "take back", "take * back", "roll back", "undid", "restore"),
    *_rules(Intent.UNDO, 5, "put * back the way", "as it be", "cancel that", "that be wrong", "never mind"),
    *_rules(Intent.REDO, 5, "redo", "undo the undo", "do it again after all"),
    *_rules(Intent.EXTRACT, 2, "extract", "isolate", "cut", "copy", "lift", "duplicate", "clone"),
    *_rules(Intent.EXTRACT, 2.5, "cutout", "sticker", "transparent"),
    *_rules(Intent.EXTRACT, 4, "keep only", "only keep", "keep just", "just keep", "leave only", "leave just"),
    *_rules(Intent.EXTRACT, 3, "cut out", "cut * out", "crop out", "keep * as material", "make a sticker"),
    *_rules(Intent.GENERATE, 2, "draw", "generate", "render", "paint", "create", "imagine", "sketch"),
    *_rules(Intent.GENERATE, 4, "from * sketch", "from * drawing", "from * scribble", "from * stroke"),
    *_rules(Intent.GENERATE, 4, "turn * sketch into", "turn * drawing into", "make * picture of"),
    *_rules(Intent.COMPOSE, 2, "paste", "compose", "insert", "place", "stick"),
    *_rules(Intent.COMPOSE, 3, "put * back", "add * material", "add * cutout", "add * cut out", "put * material"),
]


@dataclass(frozen=True)
class RefRule:
    """``consumes``: the words are only a reference, never a verb ("the *selected* region")."""

    phrase: tuple[str, ...]
    ref: Ref
    consumes: bool = False


def _refs(ref: Ref, *phrases: str, consumes: bool = False) -> list[RefRule]:
    return [RefRule(tuple(p.split()), ref, consumes) for p in phrases]


#: surface-word phrases (not lemmas: "it" must not match "its") -> reference
REF_RULES: list[RefRule] = [
    *_refs(Ref.other, "the other one", "the other", "other one", "another one", "the second one", "other"),
    *_refs(Ref.original, "the original", "original", "the first image", "the first photo", "the upload"),
    *_refs(Ref.selection, "the masked object", "the masked", "masked", "the selected", "selected", consumes=True),
    *_refs(Ref.selection, "the selection", "selection", "the mask", "this mask", consumes=True),
    *_refs(Ref.selection, "the region", "region", "the area", "area"),
    *_refs(Ref.selection, "it", "this", "that", "them", "these", "those", "here", "this one", "that one"),
    *_refs(Ref.selection, "the object", "this object", "that object", "this thing", "that thing"),
    *_refs(Ref.image, "image", "images", "photo", "photos", "picture", "pictures", "pic", "photograph", "scene"),
    *_refs(Ref.text, "text", "texts", "word", "words", "writing", "sign", "signs", "letters", "label", "caption"),
    *_refs(Ref.text, "watermark", "subtitle", "title", "written", "inscription", "poster", "lettering"),
    *_refs(Ref.sketch, "sketch", "drawing", "scribble", "strokes", "doodle"),
    *_refs(Ref.material, "material", "materials", "cutout", "cutouts", "sticker"),
    *_refs(Ref.material, "the cut out", "this cut out", "my cut out", "the cut outs", consumes=True),
]


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: verbs that introduce what to generate ("draw *a house* from my sketch")
GENERATION_VERBS = frozenset({"draw", "generate", "render", "paint", "create", "imagine", "sketch", "make"})
#: words that end a noun phrase (the object of a verb) and that start the replacement
STOP_WORDS = _words(
    "with into to by for from on in at of and then but so please now too also again as than "
    "up down left right back out off over under"
)
PREPOSITIONS_OF_REPLACEMENT = ("into", "with", "to", "by", "for")
DETERMINERS = _words("the a an this that these those my its it his her their our your some any all every one")
#: words that are never part of an object phrase ("please remove the dog in the photo")
#: greetings and small talk: no question about the picture
SMALL_TALK = _words("hello hi hey thanks thank ok okay good great nice cool bye goodbye yes no doing going")
FILLER = _words(
    "please can could would you i me we let us just now also too again kindly thanks thank "
    "be is are was were what which who where how why there here do does did"
)

SCALE_UP = {"big": 1.25, "bigger": 1.25, "large": 1.25, "larger": 1.25, "enlarge": 1.25, "grow": 1.25, "huge": 1.6}
SCALE_DOWN = {"small": 0.8, "smaller": 0.8, "shrink": 0.8, "tiny": 0.5}
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
DIRECTIONS.update({"upward": (0.0, -1.0), "upwards": (0.0, -1.0), "downward": (0.0, 1.0), "downwards": (0.0, 1.0)})
DIRECTIONS.update({"higher": (0.0, -1.0), "lower": (0.0, 1.0), "top": (0.0, -1.0), "bottom": (0.0, 1.0)})

_TOKEN_RE = re.compile(r"[A-Za-z]+|[0-9]+(?:\.[0-9]+)?")


@dataclass(frozen=True)
class Token:
    """One word of the request: its surface form (lower case), lemmas and character span."""

    text: str
    lemmas: frozenset[str]
    start: int
    end: int


@lru_cache(maxsize=4096)
def lemmas_of(word: str) -> frozenset[str]:
    """Every lemma lemminflect knows for ``word`` (any part of speech), plus the word itself."""
    from lemminflect import getAllLemmas

    found = {word}
    for lemmas in getAllLemmas(word).values():
        found.update(lemmas)
    return frozenset(found)


def tokenize(text: str) -> list[Token]:
    """Words and numbers of ``text`` with their lemmas; "what's" gives "what" and "s"."""
    return [
        Token(m.group().lower(), lemmas_of(m.group().lower()), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)
    ]


# ---- the general vocabulary beyond the rules above ------------------------------------------

#: WordNet 3.0 senses whose lemmas also name an intent (see :mod:`igpt_server.controller.wordnet`)
GENERAL_SENSES: dict[Intent, tuple[str, ...]] = {
    Intent.REMOVE: ("erase.v.01", "erase.v.02", "delete.v.01", "get_rid_of.v.01", "extinguish.v.04"),
    Intent.UNDO: ("undo.v.01", "revert.v.01"),
    Intent.RESIZE: ("enlarge.v.01", "blow_up.v.02", "shrink.v.03"),
    Intent.DESCRIBE: ("describe.v.01", "caption.v.01"),
}

#: words that name a value of a tool's ``choice`` field (a ``Literal``): the value itself always
#: counts; these add everyday phrasings and WordNet senses ("sense:blur.v.02")
VALUE_WORDS: dict[str, tuple[str, ...]] = {
    "blur": (
        "blur",
        "blurry",
        "blurred",
        "out of focus",
        "unfocus",
        "defocus",
        "soft focus",
        "bokeh",
        "fuzzy",
        "soften",
        "sense:blur.v.02",
        "sense:smear.v.02",
    ),
    "darken": ("dark", "darker", "darken", "dim", "dimmer", "shade", "shadow", "sense:darken.v.03"),
    "brighten": ("bright", "brighter", "brighten", "light up", "lighter", "sense:brighten.v.01"),
    "desaturate": (
        "desaturate",
        "grey out",
        "gray out",
        "grey",
        "gray",
        "greyscale",
        "grayscale",
        "black and white",
        "b&w",
        "monochrome",
        "colorless",
        "colourless",
        "wash out",
        "fade",
        "drain * colour",
        "drain * color",
        "remove * colour",
        "remove * color",
        "no colour",
        "no color",
    ),
    "pixelate": (
        "pixelate",
        "pixelize",
        "pixelise",
        "pixel",
        "pixelated",
        "mosaic",
        "censor",
        "anonymize",
        "anonymise",
        "sense:censor.v.02",
    ),
    "background": (
        "background",
        "backdrop",
        "behind",
        "surroundings",
        "surrounding",
        "the rest",
        "everything else",
        "rest of the",
        "around",
    ),
}

#: choice values that say where, not what: never a reason to pick a tool
SCOPE_VALUES = frozenset({"background", "selection", "foreground", "both"})
#: phrases that put the operation on the complement of the selection (surface words)
COMPLEMENT_PHRASES: tuple[str, ...] = (
    "everything but",
    "everything except",
    "all but",
    "all except",
    "anything but",
    "except",
    "excepting",
    "except for",
    "apart from",
    "other than",
    "besides",
    "everything else",
    "the rest",
    "rest of",
    "background",
    "backdrop",
    "around it",
    "around this",
    "around the",
    "surroundings",
    "outside",
    "but the",
    "but this",
    "but it",
    "but that",
    "not the",
)
#: phrases that keep the object and drop the rest ("keep only the dog"): a cut-out
KEEP_ONLY_PHRASES: tuple[str, ...] = (
    "keep only",
    "only keep",
    "keep just",
    "just keep",
    "leave only",
    "only leave",
    "leave just",
    "keep * only",
    "nothing but",
    "only the",
    "just the",
)
#: words that negate the verb right after them ("don't remove the dog")
NEGATIONS = frozenset({"not", "don", "dont", "never", "no", "without"})


def expand(phrases: tuple[str, ...]) -> list[str]:
    """``phrases`` with every ``sense:NAME`` replaced by that WordNet sense's lemmas."""
    from igpt_server.controller.wordnet import lemmas

    out: list[str] = []
    for phrase in phrases:
        if phrase.startswith("sense:"):
            out.extend(lemmas(phrase.removeprefix("sense:")))
        else:
            out.append(phrase)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class ToolRule:
    """A phrase of a tool's words (or of a WordNet sense it declares) naming the tool."""

    phrase: tuple[str, ...]
    tool: str
    weight: float


def tool_rules(tools: list[tuple[str, object]]) -> list[ToolRule]:
    """Rules from ``(name, ToolWords)`` pairs: a verb phrase weighs 2 plus 1 per extra word, a
    WordNet lemma 0.5 less, a noun 1 (a hint: "the blur")."""
    from igpt_server.controller.wordnet import lemmas

    rules: list[ToolRule] = []
    for name, words in tools:
        seen: set[tuple[str, ...]] = set()

        def add(phrase: str, weight: float, name: str = name, seen: set[tuple[str, ...]] = seen) -> None:
            key = tuple(phrase.lower().replace("-", " ").split())
            if key and key not in seen:
                seen.add(key)
                rules.append(ToolRule(key, name, weight + max(0, len([w for w in key if w != "*"]) - 1)))

        for verb in getattr(words, "verbs", ()):
            add(verb, 2.0)
        for sense in getattr(words, "senses", ()):
            for lemma in lemmas(sense):
                add(lemma, 1.5)
        for noun in getattr(words, "nouns", ()):
            add(noun, 1.0)
    return rules


def general_rules() -> list[VerbRule]:
    """:data:`VERB_RULES` plus the lemmas of :data:`GENERAL_SENSES` (weight 1.5)."""
    from igpt_server.controller.wordnet import lemmas

    known = {(r.phrase, r.intent) for r in VERB_RULES}
    extra: list[VerbRule] = []
    for intent, senses in GENERAL_SENSES.items():
        for sense in senses:
            for lemma in lemmas(sense):
                phrase = tuple(lemma.split())
                if (phrase, intent) not in known:
                    known.add((phrase, intent))
                    extra.append(VerbRule(phrase, intent, 1.5 + len(phrase) - 1))
    return VERB_RULES + extra


@dataclass(frozen=True)
class Vocabulary:
    """Everything the parser matches, built once from the registry: the general rules (with
    their WordNet senses), every registered tool's words, and the words of choice values."""

    verb_rules: list[VerbRule]
    tool_rules: list[ToolRule]
    values: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, tools: list[tuple[str, object, list[str]]]) -> Vocabulary:
        """From ``(name, ToolWords, choice values)`` of each registered tool."""
        values: dict[str, tuple[str, ...]] = {}
        rules = tool_rules([(n, w) for n, w, _ in tools])
        for name, _, choices in tools:
            for value in choices:
                values[value] = tuple(expand(VALUE_WORDS.get(value, ())))
                if value not in SCOPE_VALUES:  # "make it darker" names adjust through its value
                    rules += [ToolRule(tuple(p.split()), name, 1.5) for p in (value, *values[value])]
        return cls(general_rules(), rules, values)

    @classmethod
    def basic(cls) -> Vocabulary:
        """The general vocabulary alone (no tool's own words)."""
        return cls(general_rules(), [], {v: tuple(expand(p)) for v, p in VALUE_WORDS.items()})
