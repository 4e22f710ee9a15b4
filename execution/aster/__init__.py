"""AsterDEX: HTTP client, signing, symbol rules, errors, and the local simulator."""
