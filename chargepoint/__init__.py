"""The charge point: OCPP 1.6-J behaviour and the daemon that runs it."""
