"""Log filters: the request id on every line, and secrets scrubbed from every line.

Redaction is the last line of defence. Code should not log secrets in the first place;
these patterns catch what slips through (a key in an exception message, a header dump).
"""

from __future__ import annotations

import logging
import re

from gateway import context

# The JSON lines carry no caller, thread or process fields, so the per-record work that finds
# them is skipped (the logging HOWTO's "Optimization" section names these switches).
logging._srcfile = None
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False

_SECRET_PATTERNS = [
    # API keys: ours (sk-project_…) and OpenAI-style ones.
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"), "sk-***"),
    # JWTs (three base64url segments, the first one a JSON header).
    (re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"), "***jwt***"),
    (re.compile(r"(?i)\b(bearer)\s+[^\s\"',]+"), r"\1 ***"),
    (
        re.compile(
            r"(?i)((?:password|passwd|secret|api[_-]?key|token|authorization|cookie)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}]+"
        ),
        r"\1***",
    ),
]


# Every pattern above needs one of these (lower-cased) in the text. A text with none of them,
# nearly every log line, is returned after a few substring scans (about 1 us) instead of four
# regex substitutions (about 10 us).
_SECRET_HINTS = ("sk-", "eyj", "bearer", "passw", "secret", "api", "token", "authoriz", "cookie")


def redact(text: str) -> str:
    lowered = text.lower()
    for hint in _SECRET_HINTS:
        if hint in lowered:
            break
    else:
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = context.request_id()
        return True


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        attributes = vars(record)
        for key in attributes.keys() - _STANDARD_ATTRS:
            value = attributes[key]
            if isinstance(value, str):
                attributes[key] = redact(value)
        return True


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
