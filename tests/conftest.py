"""Shared fixtures: in-process chat servers (tests.support.ScriptedChat)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support import ScriptedChat


@pytest.fixture
def scripted_chat():
    """``scripted_chat(reply, model="fake") -> ScriptedChat``, stopped after the test."""
    servers: list[ScriptedChat] = []

    def start(reply: Callable[[dict], str], model: str = "fake") -> ScriptedChat:
        servers.append(ScriptedChat(reply, model))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def chat_server(scripted_chat):
    """``chat_server(reply)`` with ``reply(user_text) -> str``: a running
    :class:`~tests.support.ScriptedChat` answering the last user message."""
    return lambda reply: scripted_chat(lambda body: reply(body["messages"][-1]["content"]))
