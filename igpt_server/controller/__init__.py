"""The controller: a LangChain agent plus the auxiliary argument-recovery module.

* :mod:`~igpt_server.controller.agent`: :class:`Controller` (one chat turn, as a result or
  as events), :class:`ChatStep`, :class:`ChatTurn`;
* :mod:`~igpt_server.controller.lexicon` and :mod:`~igpt_server.controller.parse`: the
  words (verbs -> tools, nouns -> arguments) and the request parser;
* :mod:`~igpt_server.controller.middleware`: the auxiliary control as LangChain 1.x agent
  middleware (``wrap_model_call``: step 1; ``wrap_tool_call``: steps 2 to 4);
* :mod:`~igpt_server.controller.recovery`: the auxiliary control (identify, plan, ask, correct);
* :mod:`~igpt_server.controller.wordnet`: WordNet senses that widen the words;
* :mod:`~igpt_server.controller.warmup`: models loaded at start-up, :func:`loading_status`;
* :mod:`~igpt_server.controller.scene`: the session facts and the prompt's context block;
* :mod:`~igpt_server.controller.memory`: the bounded conversation memory;
* :mod:`~igpt_server.controller.llm` and :mod:`~igpt_server.controller.embedded`: the LLM
  providers (embedded SmolLM2, OpenAI-compatible, none, any LangChain chat model).
"""

from igpt_server.controller.agent import ChatStep, ChatTurn, Controller
from igpt_server.controller.llm import ChatLLM, LLMUnavailable, make_llm

__all__ = ["ChatLLM", "ChatStep", "ChatTurn", "Controller", "LLMUnavailable", "make_llm"]
