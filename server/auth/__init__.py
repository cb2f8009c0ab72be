"""Identity and authorisation: places, users and roles, sessions, tokens, scopes and the audit log."""
