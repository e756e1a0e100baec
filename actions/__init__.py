"""Rasa custom actions shared by the contact-center and in-car bots (runs in ``.venv-rasa``).

The action server loads every submodule of this package (``rasa run actions --actions actions``).
This package imports nothing from the rest of Emotune: it must run in Rasa's own Python 3.10 venv.
"""

__all__: list[str] = []
