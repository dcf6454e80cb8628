"""The daemon's configuration: file schema, loader, OCPP configuration keys, example files."""
