"""iGPT server: talk to images while pointing at them."""

__version__ = "0.1.0"
