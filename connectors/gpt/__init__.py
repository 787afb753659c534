"""The GPT endpoint: the openai SDK client, the gateway, the answer store, real spend."""
