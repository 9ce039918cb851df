"""Log lines carry no bearer tokens and no end-user ids: the access log's query strings are redacted."""

from __future__ import annotations

import logging

from alch3mist.api.logs import JsonFormatter, RedactQuery


def test_access_log_query_loses_token_and_user_values() -> None:
    path = "/v1/jobs/abc/viewer?inline=1&token=123.sig-x&user=ada%40example.com"
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', None, None)
    record.args = ("127.0.0.1:5", "GET", path, "1.1", 200)
    assert RedactQuery().filter(record)
    line = JsonFormatter().format(record)
    assert "sig-x" not in line and "ada" not in line and "example.com" not in line
    assert "/v1/jobs/abc/viewer?inline=1&token=***&user=***" in line
