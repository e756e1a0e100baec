"""Rasa custom actions shared by the contact-center and in-car bots (runs in ``.venv-rasa``).

The action server loads every submodule of this package (``rasa run actions --actions actions``).
It runs in Rasa's own Python 3.10 venv, so the only thing it imports from the rest of Emotune is
``emotune.escalation``: the streak rule, standard library only, shared with the toolkit.
"""

__all__: list[str] = []
