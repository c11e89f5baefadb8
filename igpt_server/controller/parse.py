"""Step 1 of the auxiliary control: parse a request's verbs and nouns.

:func:`parse_request` turns a message into a :class:`ParsedRequest`: the intents its verb
phrases name (ranked), the argument references its nouns make ("it" -> the selection,
"the other one" -> the other mask), and the free arguments the words carry: the object
("find *the dog*"), the replacement ("replace this with *a red car*"), a scale ("bigger"),
a direction ("to the left"), a time in a clip ("at 0:12"), and any file paths it mentions
(which must be artifacts of the session, or the request is refused).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from igpt_server.controller.lexicon import (
    COMPLEMENT_PHRASES,
    DETERMINERS,
    DIRECTIONS,
    FILLER,
    GENERATION_VERBS,
    INTENT_TOOLS,
    KEEP_ONLY_PHRASES,
    PREPOSITIONS_OF_REPLACEMENT,
    REF_RULES,
    SCALE_DOWN,
    SCALE_UP,
    SMALL_TALK,
    STOP_WORDS,
    VERB_RULES,
    Intent,
    Ref,
    Token,
    ToolRule,
    VerbRule,
    tokenize,
)
from igpt_server.perception.timecode import find_time

#: a ``*`` in a phrase skips at most this many words
MAX_GAP = 4
#: something that looks like a file path: absolute, home, relative, drive, or dir/name.ext
_PATH_RE = re.compile(r"(?<![\w/])(?:~|\.{1,2})?(?:/|\\)?[\w.~-]+(?:[/\\][\w.~-]+)+|(?<![\w/])/[\w.~-]+")
_ARTIFACT_DIRS = ("image/", "mask/", "sketch/", "material/", "audio/", "video/")


@dataclass(frozen=True)
class IntentMatch:
    """One intent a phrase of the request names; ``start`` and ``end`` index its tokens."""

    intent: Intent
    score: float
    phrase: str
    start: int
    end: int
    head_end: int  # end of the phrase's words before its first '*'
    tool: str | None = None  # for Intent.TOOL: the tool whose words matched


@dataclass(frozen=True)
class RefMatch:
    ref: Ref
    phrase: str
    start: int


@dataclass
class ParsedRequest:
    """What the words of a request say, before looking at the session."""

    text: str
    words: int
    intents: list[IntentMatch] = field(default_factory=list)
    refs: list[RefMatch] = field(default_factory=list)
    object_phrase: str | None = None
    replacement: str | None = None
    scale: float | None = None
    direction: tuple[float, float] | None = None
    distance_px: float | None = None
    paths: list[str] = field(default_factory=list)
    #: "complement" (everything but the selection, the background) or "keep_only" ("keep only this")
    scope: str | None = None
    #: the verb is negated ("don't remove the dog"): nothing is run, the user is asked
    negated: bool = False
    #: values of tools' choice fields the words name, first mentioned first ("blur", "background")
    values: list[str] = field(default_factory=list)
    #: a time in a clip the words name, in seconds ("at 0:12", "at 12 seconds"), for a video tool's ``time``
    time_s: float | None = None

    @property
    def intent(self) -> Intent | None:
        """The best intent, or None when no verb of the lexicon was found."""
        return self.intents[0].intent if self.intents else None

    @property
    def ref_kinds(self) -> set[Ref]:
        return {r.ref for r in self.refs}

    def has(self, ref: Ref) -> bool:
        return ref in self.ref_kinds

    def tool_candidates(self) -> list[str]:
        """Tool names the intents point at, best intent first, without duplicates."""
        names: list[str] = []
        for match in self.intents:
            for name in INTENT_TOOLS[match.intent] if match.tool is None else (match.tool,):
                if name not in names:
                    names.append(name)
        return names


def parse_request(
    text: str,
    tool_rules: list[ToolRule] | None = None,
    values: dict[str, tuple[str, ...]] | None = None,
    verb_rules: list[VerbRule] | None = None,
) -> ParsedRequest:
    """Parse ``text`` (any length; only the words matter) into a :class:`ParsedRequest`.

    ``tool_rules`` (the registry's tools' words), ``values`` (choice values -> phrases) and
    ``verb_rules`` (default :data:`VERB_RULES`) come from the controller's
    :class:`~igpt_server.controller.vocabulary.Vocabulary`."""
    tokens = tokenize(_blank(text, find_paths(text)))
    refs, reference_only = _find_refs(tokens)
    intents = _find_intents(tokens, reference_only, verb_rules or VERB_RULES, tool_rules or [])
    if not intents and text.strip().endswith("?"):
        intents = [IntentMatch(Intent.QUESTION, 0.5, "?", 0, 0, 0)]
    weak_question = bool(intents) and intents[0].intent is Intent.QUESTION and intents[0].score < 2
    # a bare "who"/"why"/"?" is a question about the picture only if it names something
    if weak_question and not refs and not _content_words(tokens):
        intents = [m for m in intents if m.intent is not Intent.QUESTION]

    parsed = ParsedRequest(text=text, words=len(text.split()), intents=intents, refs=refs)
    parsed.paths = find_paths(text)
    parsed.scale = _scale(tokens, text)
    parsed.direction, parsed.distance_px = _direction(tokens, text)
    parsed.values = _values(tokens, values or {})
    parsed.time_s = find_time(text)
    parsed.scope, scope_end = _scope(tokens)
    if intents:
        best = intents[0]
        parsed.negated = _negated(tokens, best.start)
        parsed.object_phrase = _object_phrase(text, tokens, best, reference_only)
        if best.intent in (Intent.REPLACE, Intent.GENERATE) or (
            best.tool is not None and best.tool in ("replace", "generate")
        ):
            parsed.replacement = _replacement(text, tokens, best)
    if parsed.scope is not None and scope_end is not None:
        kept = _phrase_from(text, tokens, scope_end, reference_only)
        if kept is not None or parsed.object_phrase in _SCOPE_OBJECTS:
            parsed.object_phrase = kept
    return parsed


#: object phrases that only name the scope ("erase *everything* but the dog")
_SCOPE_OBJECTS = {None, "everything", "background", "the background", "rest", "backdrop", "all"}


def _phrase_from(text: str, tokens: list[Token], start: int, skip: frozenset[int]) -> str | None:
    """The noun phrase starting at token ``start`` (up to a stop word)."""
    match = IntentMatch(Intent.SELECT, 0, "", start, start, start)
    return _object_phrase(text, tokens, match, skip)


def _scope(tokens: list[Token]) -> tuple[str | None, int | None]:
    """("keep_only" or "complement", the token index after the phrase) or (None, None)."""
    for kind, phrases in (("keep_only", KEEP_ONLY_PHRASES), ("complement", COMPLEMENT_PHRASES)):
        for phrase in sorted(phrases, key=lambda p: -len(p.split())):
            words = tuple(phrase.split())
            for i in range(len(tokens)):
                end = _match(tokens, i, words, lemmas=False, skip=frozenset())
                if end is not None:
                    after = end if words[-1] not in {"the", "this", "it", "that"} else end - 1
                    if kind == "keep_only" and words[0] in {"only", "just"} and not _keeps(tokens, i):
                        continue
                    return kind, after
    return None, None


def _keeps(tokens: list[Token], index: int) -> bool:
    """ "only the dog" / "just the dog" count as keep-only when a keep/leave verb comes before."""
    return any(t.lemmas & {"keep", "leave", "save", "retain", "preserve"} for t in tokens[:index])


def _negated(tokens: list[Token], start: int) -> bool:
    """True when the verb at ``start`` is negated: "don't remove", "do not erase", "never crop"."""
    before = [t.text for t in tokens[max(0, start - 2) : start]]
    if before[-1:] in (["not"], ["never"]):
        return True
    return len(before) == 2 and before[1] == "t" and before[0] in {"don", "do", "doesn", "didn", "dont"}


def _values(tokens: list[Token], values: dict[str, tuple[str, ...]]) -> list[str]:
    """Choice values whose words occur, ordered by where they occur first."""
    found: list[tuple[int, str]] = []
    for value, phrases in values.items():
        starts = []
        for phrase in (value, *phrases):
            words = tuple(phrase.lower().split())
            for i in range(len(tokens)):
                if _match(tokens, i, words, lemmas=True, skip=frozenset()) is not None:
                    starts.append(i)
                    break
        if starts:
            found.append((min(starts), value))
    return [value for _, value in sorted(found)]


def _content_words(tokens: list[Token]) -> list[str]:
    """Words that name something ("desk" in "what is on the desk?"), not filler or small talk."""
    ignored = FILLER | DETERMINERS | STOP_WORDS | SMALL_TALK
    return [t.text for t in tokens if t.text not in ignored and not t.text.isdigit()]


def _blank(text: str, paths: list[str]) -> str:
    """``text`` with every path replaced by spaces (same offsets), so its parts are no words."""
    for path in paths:
        text = text.replace(path, " " * len(path))
    return text


def find_paths(text: str) -> list[str]:
    """Substrings that look like file paths ('/etc/passwd', '../x', 'image/3f9a0c1d_a.png').

    'red/blue' is not a path: a match needs a leading '/', '~' or '.', a file extension, two
    separators, or an artifact folder ('image/', 'mask/', ...).
    """
    found = []
    for match in _PATH_RE.finditer(text):
        candidate = match.group().rstrip(".,;:!?")
        looks_like_file = (
            candidate.startswith(("/", "~", ".", "\\"))
            or re.search(r"\.[A-Za-z0-9]{2,5}$", candidate) is not None
            or len(re.findall(r"[/\\]", candidate)) >= 2
            or candidate.startswith(_ARTIFACT_DIRS)
            or re.match(r"^[A-Za-z]:\\", candidate) is not None
        )
        if looks_like_file and candidate not in found:
            found.append(candidate)
    return found


# ---- matching ---------------------------------------------------------------------------


def _match(tokens: list[Token], start: int, phrase: tuple[str, ...], lemmas: bool, skip: frozenset[int]) -> int | None:
    """End index (exclusive) of ``phrase`` matched at ``start``, or None."""
    if not phrase:
        return start
    head, rest = phrase[0], phrase[1:]
    if head == "*":
        for gap in range(MAX_GAP + 1):
            end = _match(tokens, start + gap, rest, lemmas, skip)
            if end is not None:
                return end
        return None
    if start >= len(tokens) or start in skip:
        return None
    token = tokens[start]
    if not (head in token.lemmas if lemmas else head == token.text):
        return None
    return _match(tokens, start + 1, rest, lemmas, skip)


def _find_refs(tokens: list[Token]) -> tuple[list[RefMatch], frozenset[int]]:
    """Reference phrases, longest first, without overlaps; and tokens that are only references."""
    taken: set[int] = set()
    consumed: set[int] = set()
    found: list[RefMatch] = []
    for rule in sorted(REF_RULES, key=lambda r: -len(r.phrase)):
        for i in range(len(tokens)):
            end = _match(tokens, i, rule.phrase, lemmas=False, skip=frozenset(taken))
            if end is None:
                continue
            taken.update(range(i, end))
            if rule.consumes:
                consumed.update(range(i, end))
            found.append(RefMatch(rule.ref, " ".join(rule.phrase), i))
    reference_only = frozenset(consumed)
    found.sort(key=lambda r: r.start)
    return found, reference_only


def _find_intents(
    tokens: list[Token], skip: frozenset[int], verb_rules: list[VerbRule], tool_rules: list[ToolRule]
) -> list[IntentMatch]:
    """The best match of each intent (and of each tool's words), ranked by score; ties go to
    the later phrase, then to the general intent over a tool's own words."""
    best: dict[tuple[Intent, str | None], IntentMatch] = {}
    rules: list[tuple[tuple[str, ...], Intent, float, str | None]] = [
        (r.phrase, r.intent, r.weight, None) for r in verb_rules
    ]
    rules += [(r.phrase, Intent.TOOL, r.weight, r.tool) for r in tool_rules]
    for phrase, intent, weight, tool in rules:
        for i in range(len(tokens)):
            end = _match(tokens, i, phrase, lemmas=True, skip=skip)
            if end is None:
                continue
            head = phrase.index("*") if "*" in phrase else len(phrase)
            match = IntentMatch(intent, weight, " ".join(phrase), i, end, i + head, tool)
            current = best.get((intent, tool))
            if current is None or (match.score, match.start) > (current.score, current.start):
                best[(intent, tool)] = match
    return sorted(best.values(), key=lambda m: (m.score, m.start, m.tool is None), reverse=True)


# ---- free arguments ---------------------------------------------------------------------


def _clean_phrase(words: list[Token], text: str) -> str | None:
    """The original text spanned by ``words`` minus leading determiners and filler words."""
    while words and (words[0].text in DETERMINERS or words[0].text in FILLER):
        words = words[1:]
    while words and (words[-1].text in FILLER or words[-1].text in DETERMINERS):
        words = words[:-1]
    if not words:
        return None
    return text[words[0].start : words[-1].end].strip() or None


def _object_phrase(text: str, tokens: list[Token], verb: IntentMatch, skip: frozenset[int]) -> str | None:
    """The noun phrase after the verb ("find the red car on the left" -> "red car"), or None.

    Reference words ("it", "this", "the image") are not objects.
    """
    words: list[Token] = []
    verb_words = verb.phrase.split()
    tail = len(verb_words) - verb_words.index("*") - 1 if "*" in verb_words else 0
    stop = verb.end - tail if tail else len(tokens)  # "make *the truck* disappear"
    for index in range(verb.head_end, stop):
        token = tokens[index]
        if token.text in STOP_WORDS:
            break
        if index in skip or token.text in {"it", "this", "that", "them", "here", "there"}:
            if words:
                break
            continue
        words.append(token)
    phrase = _clean_phrase(words, text)
    if phrase is None:
        return None
    lowered = {w.lower() for w in phrase.split()}
    generic = {"image", "photo", "picture", "pic", "selection", "region", "area", "object", "one", "thing", "mask"}
    generic |= {"everything", "background", "backdrop", "rest", "all", "text", "words", "writing"}
    if lowered <= generic | {"selected", "masked", "whole", "entire", "other"}:
        return None
    return phrase


def _replacement(text: str, tokens: list[Token], verb: IntentMatch) -> str | None:
    """What to put instead ("replace this with a red car" -> "a red car").

    The words after the last of into/with/to/by/for that follows the verb; for "draw a cat"
    (no preposition) the object phrase itself.
    """
    if verb.phrase == "put * where":  # "put *a fox* where the dog is"
        between = tokens[verb.head_end : verb.end - 1]
        return _clean_phrase(between, text) if between else None
    after = tokens[verb.start :]
    cut = None
    for index, token in enumerate(after):
        if token.text in PREPOSITIONS_OF_REPLACEMENT and index + 1 < len(after):
            cut = index
    if cut is None:
        if verb.intent is Intent.GENERATE:
            return _generation_subject(text, tokens, verb)
        return None
    words = after[cut + 1 :]
    stop = next((i for i, w in enumerate(words) if w.text in {"please", "then", "and"}), len(words))
    words = words[:stop]
    while words and words[-1].text in FILLER:
        words = words[:-1]
    if not words:
        return None
    return text[words[0].start : words[-1].end].strip() or None


def _generation_subject(text: str, tokens: list[Token], verb: IntentMatch) -> str | None:
    """ "draw a house from my sketch" -> "a house"."""
    first = next((i for i, t in enumerate(tokens) if t.lemmas & GENERATION_VERBS), verb.start)
    words: list[Token] = []
    for token in tokens[first + 1 :]:
        if token.text in {"from", "using", "with", "based", "please", "out"}:
            break
        words.append(token)
    while words and words[0].text in {"me", "us", "it", "this", "that"}:
        words = words[1:]
    if not words:
        return None
    return text[words[0].start : words[-1].end].strip() or None


def _scale(tokens: list[Token], text: str) -> float | None:
    """The size factor a request asks for: bigger 1.25, smaller 0.8, twice 2, half 0.5, N%."""
    lowered = text.lower()
    percent = re.search(r"(\d+(?:\.\d+)?)\s*(?:%|percent)", lowered)
    words = {t.text for t in tokens}
    up = words & set(SCALE_UP)
    down = words & set(SCALE_DOWN)
    if percent and (up or down):
        factor = float(percent.group(1)) / 100
        return round(1 + factor, 3) if up else round(max(1 - factor, 0.05), 3)
    times = re.search(r"(\d+(?:\.\d+)?)\s*(?:x|times)\b", lowered)
    if times:
        return float(times.group(1))
    if "twice" in words or "double" in words:
        return 2.0
    if "half" in words:
        return 0.5
    if words & {"much", "lot", "way"}:
        if up:
            return 1.5
        if down:
            return 0.6
    if up:
        return max(SCALE_UP[w] for w in up)
    if down:
        return min(SCALE_DOWN[w] for w in down)
    return None


def _direction(tokens: list[Token], text: str) -> tuple[tuple[float, float] | None, float | None]:
    """A unit direction ("to the left" -> (-1, 0)) and a distance in pixels if one is given."""
    dx = dy = 0.0
    for token in tokens:
        if token.text in DIRECTIONS:
            ux, uy = DIRECTIONS[token.text]
            dx, dy = dx + ux, dy + uy
    distance = re.search(r"(\d+(?:\.\d+)?)\s*(?:px|pixels?)\b", text.lower())
    if dx == 0 and dy == 0:
        return None, float(distance.group(1)) if distance else None
    norm = max(abs(dx), abs(dy))
    return (dx / norm, dy / norm), float(distance.group(1)) if distance else None
