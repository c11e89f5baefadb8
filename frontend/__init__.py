"""The canvas page (import package ``igpt_frontend``): static files served at ``/``."""

from pathlib import Path

FRONTEND_DIR = Path(__file__).parent
