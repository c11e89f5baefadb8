"""The auxiliary control as LangChain agent middleware (LangChain 1.x ``create_agent``).

The seed paper's four steps, where they sit in the agent loop:

* :class:`RoutingMiddleware` (``wrap_model_call``): **step 1**. Before the model node answers,
  the request's verbs and nouns (and the pointing) are parsed; when they decide the call with
  certainty and the LLM is not trusted to route, the model is not called at all (the call is
  answered by the rules, ``chosen_by="rules"``); otherwise the model proposes and its tool is
  confirmed (``llm+rules``), kept (``llm``) or replaced (``rules``). After a tool ran, the
  next step of a rule plan (text_mask then remove; invert_selection then the edit) or the
  reply is given without a model call when the LLM does not write replies.
* :class:`RecoveryMiddleware` (``wrap_tool_call``): **steps 2 to 4**. The LLM is asked for
  missing artifact arguments, every argument is corrected by rule, a gesture becomes a mask
  (``segment`` runs first, through the same tool node), and the tool runs through LangChain's
  tool node (the handler), whose tool functions call the one :class:`ToolRunner`. The step is
  reported with ``recovered`` and ``chosen_by``.

Both delegate to the :class:`~igpt_server.controller.agent.Controller` that built the agent;
the turn's state travels as the agent's runtime context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse
from langchain.agents.middleware.types import ToolCallRequest
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.types import Command

if TYPE_CHECKING:
    from igpt_server.controller.agent import Controller


class RoutingMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """Step 1 of the auxiliary control around every model call."""

    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse | AIMessage:
        return self.controller.route(request, handler)


class RecoveryMiddleware(AgentMiddleware):  # type: ignore[type-arg]
    """Steps 2 to 4 of the auxiliary control around every tool call."""

    def __init__(self, controller: Controller) -> None:
        super().__init__()
        self.controller = controller

    def wrap_tool_call(
        self, request: ToolCallRequest, handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
    ) -> ToolMessage | Command[Any]:
        return self.controller.recover_and_run(request, handler)
