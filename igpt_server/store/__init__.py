"""Sessions and their artifacts: SQLite metadata plus files under one data directory."""

from igpt_server.store.artifacts import Artifact, ArtifactKind, Message, SessionState
from igpt_server.store.sessions import SessionStore

__all__ = ["Artifact", "ArtifactKind", "Message", "SessionState", "SessionStore"]
