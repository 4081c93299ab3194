"""Keeping credentials out of everything a sweep records: MLflow params, tags and artifacts, and its output.

Credentials belong in the environment (MLflow reads ``MLFLOW_TRACKING_USERNAME`` / ``_PASSWORD`` /
``_TOKEN`` itself; on Kubernetes they come from a Secret). Three ways a secret could still slip into a
record, and what this module does about each:

* a config key named like a secret (``script.env.HF_TOKEN``): `is_secret_key` says so, and the callers drop
  the key (`redact_config`);
* a URI with ``user:password@`` or a signed query (``?sig=...``, ``?X-Amz-Signature=...``): `redact_uri`
  drops the userinfo and blanks secret-looking query values;
* a secret's *value* showing up in free text (an error message that quotes a URL, a log line):
  `redact_text` replaces every known secret value (`env_secrets`) and any URI userinfo, and
  `install_log_redaction` applies it to every log record the driver emits.

Key matching works on the words of a key (split at ``_ - . `` and camelCase humps), so ``HF_TOKEN`` and
``apiKey`` count as secret while ``max_tokens`` and ``horizon.tokens`` (plural: token *counts*) do not.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Any one of these words makes a key secret.
_SECRET_WORDS = frozenset({
    "password", "passwd", "passphrase", "secret", "secrets", "token", "credential", "credentials",
    "apikey", "authorization", "sig", "signature", "cookie",
})  # not "pwd": $PWD is the working folder, and masking it would garble every path in the output
# Two consecutive words that together make a key secret (``api_key``, ``AWS_SECRET_ACCESS_KEY``, ...).
_SECRET_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key"), ("secret", "key"),
                           ("auth", "key"), ("client", "secret"), ("x", "amz")})
# Environment variables that hold credentials although their names alone would not say so.
KNOWN_SECRET_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
                    "RAY_AUTH_TOKEN", "PGPASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "HF_TOKEN")
# A value shorter than this is not treated as a secret to scrub from text: masking every "1" or "on"
# would garble output and protect nothing.
MIN_SECRET_LEN = 6
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")
# scheme://user[:password]@  in free text (the userinfo part only, up to the '@').
_URI_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")


def key_words(key: str) -> list[str]:
    """The lower-case words of a key: ``"mlflow.trackingToken"`` -> ``["mlflow", "tracking", "token"]``."""
    return [w.lower() for w in _WORD_SPLIT.split(str(key)) if w]


def is_secret_key(key: str) -> bool:
    """Whether a config key or variable name looks like it holds a credential (see the module docstring)."""
    words = key_words(key)
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in zip(words, words[1:]))


def redact_uri(value: str) -> str:
    """A URI without its ``user:password@`` part and with secret-looking query values masked.

    Other strings (plain words, paths, ``sqlite:///x.db``) come back unchanged.
    """
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if not parts.scheme or "://" not in value:
        return value
    netloc = parts.netloc.rsplit("@", 1)[1] if "@" in parts.netloc else parts.netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_key(k) for k, _ in pairs):
            query = urlencode([(k, MASK if is_secret_key(k) else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return value  # unchanged; urlunsplit would also turn sqlite:///x into sqlite:/x
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_config(config: Any, secrets: Iterable[str] | None = None) -> Any:
    """A copy of a YAML-shaped config as it may be recorded: secret-looking keys removed, every string URI
    redacted and any secret value masked (`secrets`; the environment's credentials when None)."""
    values = env_secrets() if secrets is None else list(secrets)

    def clean(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: clean(v) for k, v in node.items() if not is_secret_key(str(k))}
        if isinstance(node, (list, tuple)):
            return [clean(v) for v in node]
        if isinstance(node, str):
            return redact_text(redact_uri(node), values)
        return node

    return clean(config)


def env_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The values of the environment's credential variables (known names or secret-looking ones), longest
    first, so that `redact_text` masks a secret before any shorter secret inside it."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if (k in KNOWN_SECRET_ENV or is_secret_key(k)) and len(v) >= MIN_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def config_secrets(config: Any) -> list[str]:
    """Secret values held in a config: under secret-looking keys, and URI passwords (for `redact_text`)."""
    found: set[str] = set()

    def walk(node: Any, secret: bool) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                walk(v, secret or is_secret_key(str(k)))
        elif isinstance(node, (list, tuple)):
            for v in node:
                walk(v, secret)
        elif isinstance(node, str):
            if secret and len(node) >= MIN_SECRET_LEN:
                found.add(node)
            for match in _URI_USERINFO.finditer(node):
                # Only the password: a user name (`schedsweep@postgres`) is no secret, and masking it would
                # garble every path and tag that contains the same word.
                password = match.group("userinfo").partition(":")[2]
                if len(password) >= MIN_SECRET_LEN:
                    found.add(password)
        elif secret and node is not None and len(str(node)) >= MIN_SECRET_LEN:
            found.add(str(node))

    walk(config, False)
    return sorted(found, key=len, reverse=True)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every given secret value masked and the userinfo of any URI in it removed."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return _URI_USERINFO.sub(lambda m: m.group("scheme"), text)


def _redact_record(record: logging.LogRecord, secrets: list[str]) -> None:
    """Rewrite a record's message (and its traceback, if any) through `redact_text`, in place."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is the logging module's to report, not ours
        return
    clean = redact_text(message, secrets)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        # Handlers format the traceback later from exc_info; when it holds a secret, leave them a redacted
        # rendering instead (and the exception object itself no longer travels with the record).
        text = logging.Formatter().formatException(record.exc_info)
        clean_tb = redact_text(text, secrets)
        if clean_tb != text:
            record.exc_text, record.exc_info = clean_tb, None


_installed: list[str] | None = None


def install_log_redaction(extra_secrets: Iterable[str] = ()) -> list[str]:
    """Redact the environment's secrets (plus `extra_secrets`) from every log record this process creates
    from now on, whichever logger or handler it goes to; returns the secrets being masked.

    It wraps the log record factory rather than adding a filter: a filter on a logger does not see its
    children's records, and Ray and MLflow add their handlers later than the driver starts.
    Idempotent: a second call only adds secrets.
    """
    global _installed
    secrets = sorted({*env_secrets(), *(s for s in extra_secrets if len(s) >= MIN_SECRET_LEN)}, key=len, reverse=True)
    if _installed is not None:
        _installed[:] = sorted({*_installed, *secrets}, key=len, reverse=True)
        return list(_installed)
    _installed = secrets
    make_record = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        _redact_record(record, _installed or [])
        return record

    logging.setLogRecordFactory(factory)
    return list(secrets)
