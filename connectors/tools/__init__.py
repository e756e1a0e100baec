"""Operator tools around the gateway, not part of it: the demo call, the pilot stack
(gateway + Rasa + action server with an explicit model) and call reports (HTML timelines)."""
