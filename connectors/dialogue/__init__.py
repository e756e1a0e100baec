"""The dialogue side of a call: the Rasa REST client (async for the gateway, sync for the SDK,
one core with fail-over over ``rasa.replicas``) and the hand-off transports (Twilio REST transfer)."""
