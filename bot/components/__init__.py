"""Custom Rasa NLU components of our bots (run in ``.venv-rasa``; Rasa imports them by module path,
with the repository root on ``PYTHONPATH`` as ``connectors/devtools/rasa_stack.py`` sets it)."""
