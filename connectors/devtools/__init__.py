"""Development, test and benchmark tooling: the peers' side of each protocol (what Twilio,
Genesys or an app would send), a real-time caller emulator, and the Rasa process launcher
(``RasaStack``: trains if needed, starts Rasa + the action server, stops them)."""
