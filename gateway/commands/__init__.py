"""Commands from the center: ``processor`` (check, dispatch, answer, audit) and
``signing`` (HMAC signatures). Domains (``gateway.alarm.commands``) give handlers."""
