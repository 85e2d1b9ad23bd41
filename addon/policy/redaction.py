"""Find secrets in text and JSON bodies, and replace them by `[REDACTED:<kind>]`.

Kinds (stable strings, in records, logs and refusals):

- from detect-secrets' plugins (their `denylist` regexes, compiled here with word edges added):
  `aws-access-key` (AWSKeyDetector), `github-token` (GitHubTokenDetector), `gitlab-token` (GitLabTokenDetector),
  `slack-token` and `slack-webhook` (SlackDetector), `stripe-key` (StripeDetector, widened to the whole key and
  to test keys), `openai-key` (OpenAIDetector's `T3BlbkFJ` keys), `discord-token` (DiscordBotTokenDetector),
  `twilio-key` (TwilioKeyDetector), `sendgrid-key` (SendGridDetector), `pypi-token` (PypiTokenDetector),
  `telegram-token` (TelegramBotTokenDetector), `mailchimp-key` (MailchimpDetector), `square-oauth`
  (SquareOAuthDetector), `azure-storage-key` (AzureStorageKeyDetector, the key after `AccountKey=`),
  `url-password` (BasicAuthDetector: only the password of `scheme://user:password@host`), `jwt`
  (JwtTokenDetector's validity check on a three-part token), `aws-secret-key` (AWSKeyDetector's quoted
  `aws...key = "<40>"` form, among others below);
- our own table, for what detect-secrets lacks: `anthropic-key` (`sk-ant-api03-...`, `sk-ant-admin01-...`),
  `openai-key` (`sk-proj-`, `sk-svcacct-`, `sk-admin-`, classic `sk-` + 48), `google-api-key` (`AIza` + 35),
  `github-token` (fine-grained `github_pat_...`), `huggingface-token` (`hf_...`), `npm-token` (`npm_` + 36 and
  `.npmrc` `_authToken=`), `bearer-token` (`Bearer <token>`), `basic-auth` (`Authorization: Basic <b64>`),
  `private-key` (the whole PEM/OpenSSH/PGP/PuTTY block, BEGIN to END), `aws-secret-key`
  (`aws_secret_access_key = ...`, or 40 base64 characters within 300 characters of an access key id),
  `bridge-token` (this proxy's own `aib_...` tokens);
- credential context, after detect-secrets' KeywordDetector and heuristic filters: `password` for the value
  assigned to a key ending in password/passwd/passphrase/pwd/pass, `secret` for one assigned to a key ending in
  secret/token/auth/credential(s)/api_key/access_key/private_key and other `*_key`s of that sort (`key = "..."`
  alone is not one: too common). Keys match by segment (`db_password`, `dbPassword`, `x-api-key`; not
  `bypass`, `author`, `password_hash`, `tokenizer`). A `secret` value must look random (16+ characters,
  letters and digits, entropy 3+ bits a character, no spaces, not a UUID, path or URL); a `password` value may
  be human-chosen (6+ characters, no spaces) but not a plain word (`"Passwort"` is a label). Neither may be a
  reference (`os.environ["PW"]`, `settings.PW`, `$PW`, `${PW}`, `{pw}`, `<pw>`, `%s`), a literal (`None`,
  `null`, `true`), a placeholder (`changeme`, `xxx`, `***`, `your-...`, `...example...`, the key word itself as
  in `postgres://user:password@host`) or an earlier `[REDACTED:...]`. Unquoted values (`.env`, YAML, URLs'
  query strings) must also hold a digit or symbol, so `password: str` or `token: DB_TOKEN` stay;
- operator patterns, `[redaction] patterns`, with the operator's own kinds.

Not enabled: detect-secrets' bare high-entropy plugins (they flag hashes, SHAs and base64 data), Artifactory
(its `AP...` password pattern matches identifiers such as `APDUHandler`), IBM/Cloudant/SoftLayer (their
keyword forms are the credential context above), and public IPs (not secrets). detect-secrets' own scan path
(`analyze_line` under `transient_settings`) is not used: its settings are a process-wide singleton, not safe in
the audit writer's thread, and it works line by line; the plugins' regexes and pure filters are used directly.

Overlaps: the longest finding wins; on equal spans the operator's kinds, then the specific kinds above, beat
the generic ones (`bearer-token`, `url-password`, `password`, `secret`).
"""

import bisect
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from detect_secrets.filters.heuristic import (
    is_not_alphanumeric_string,
    is_potential_uuid,
    is_prefixed_with_dollar_sign,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

REDACTED = "[REDACTED:{kind}]"
KIND = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
BRIDGE_PREFIX = "aib_"  # addon.config.TOKEN_PREFIX (not imported: config may import this module to check patterns)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Rule:
    """One detector. Each regex starts with a literal where it can, for sre's fast scan to it: a rule costs about
    one `str.find` over a clean text. What a literal start cannot say (the left word edge, the characters before
    an anchor) is checked on each match."""

    kind: str
    regex: re.Pattern[str]
    group: int = 0
    hints: tuple[str, ...] = ()  # run only when one of these is in the text (for regexes without a literal start)
    check: Callable[[str], bool] | None = None  # the candidate secret is one
    grow: bool = False  # take the token characters after a fixed-length match too (keys outgrew the plugins)
    edge: bool = True  # the match must start at a word edge, not inside base64 data or a longer identifier
    folded: bool = False  # regex is lowercase and runs on the lowercased text (IGNORECASE costs sre its fast scan)
    verify: re.Pattern[str] | None = None  # a detect-secrets regex the match (and `back` characters before) must end
    back: int = 0


_E = r"(?![A-Za-z0-9])"
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _ds(pattern: re.Pattern[str], right: str = "") -> re.Pattern[str]:
    """A detect-secrets denylist regex with a right word edge, so it does not fire inside longer strings. (The
    left edge is checked on each match: a lookbehind first would cost sre its fast scan for a literal prefix.)"""
    return re.compile(f"(?:{pattern.pattern}){right}", pattern.flags)


def _ending(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """A detect-secrets regex that must match up to the end of the window it is searched in."""
    return re.compile(rf"(?:{pattern.pattern})\Z", pattern.flags & ~re.IGNORECASE)


def _mixed_case(value: str) -> bool:
    return any(c.isupper() for c in value) and any(c.islower() for c in value)


def _jwt(value: str) -> bool:
    return JwtTokenDetector.is_formally_valid(value)


# --- the credential-context values ------------------------------------------------------------------------------

_PLACEHOLDER_WORDS = (
    "password passwd pass passphrase pwd secret token key apikey api_key credential credentials auth "
    "changeme change_me change-me changeit example sample dummy placeholder redacted null none nil "
    "undefined true false test testing default empty required optional string str bytes user username "
    "admin root guest foo bar baz value secret_value mysecret mypassword yourpassword your_password "
    "your-password"
)
_PLACEHOLDERS = frozenset(_PLACEHOLDER_WORDS.split())
_PLACEHOLDER = re.compile(
    r"^(?:x+|\*+|\.+|#+|-+|_+|0+|\?+)$|^(?:your|my|insert|enter|put|replace|add)[_-]|example|placeholder|changeme"
    r"|^%[sd]$|^%\(\w+\)s$|^\{\{.*\}\}$|^\[redacted",
    re.IGNORECASE,
)
_REFERENCE = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$")  # settings.PW, self.token
_PLAIN_WORD = re.compile(r"^[A-Za-z][a-z]*$")
_HAS_DIGIT = re.compile(r"\d")
_HAS_SYMBOL = re.compile(r"[^\w]")
_PATHLIKE = re.compile(r"^(?:/|\./|\.\./|~/|[A-Za-z]:\\)|://|^[a-z0-9_.\-]+(?:/[a-z0-9_.\-]+){2,}$")


def _entropy(value: str) -> float:
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def _not_a_value(value: str) -> bool:
    return (
        value.lower() in _PLACEHOLDERS
        or bool(_PLACEHOLDER.search(value))
        or is_templated_secret(value)
        or is_prefixed_with_dollar_sign(value)
        or is_not_alphanumeric_string(value)
        or is_sequential_string(value)
    )


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME_WORDS = re.compile(r"pass|pwd|secret|token|auth|credential|key", re.IGNORECASE)


def _a_name(value: str) -> bool:
    """An unquoted value that is a name in code, not a value: `password_input_v2`, `AccessKeyV2Builder`."""
    return bool(_IDENTIFIER.match(value) and _NAME_WORDS.search(value))


def _password_value(value: str, quoted: bool) -> bool:
    if not 6 <= len(value) <= 200 or any(c.isspace() for c in value) or _not_a_value(value):
        return False
    if not quoted and _a_name(value):
        return False
    if not quoted and (_REFERENCE.match(value) or not (_HAS_DIGIT.search(value) or _HAS_SYMBOL.search(value))):
        return False
    return not _PLAIN_WORD.match(value)


def _secret_value(value: str, quoted: bool) -> bool:
    return (
        16 <= len(value) <= 500
        and not any(c.isspace() for c in value)
        and bool(_HAS_DIGIT.search(value))
        and any(c.isalpha() for c in value)
        and not _not_a_value(value)
        and not is_potential_uuid(value)
        and not _PATHLIKE.search(value)
        and (quoted or not (_REFERENCE.match(value) or _a_name(value)))
        and _entropy(value) >= 3.0
    )


_EDGE = r"(?:(?<![A-Za-z0-9])|(?-i:(?<=[a-z0-9])(?=[A-Z])))"  # a key segment starts: db_password, dbPassword
_PASSWORD_WORDS = r"pass(?:word|wd|phrase)?|pwd|contrase(?:ñ|n)a"
_SECRET_WORDS = (
    r"secret|token|auth|credentials?"
    r"|(?:api|access|secret|private|client|auth|account|service|signing|encryption|master|app|license|session|db"
    r"|database)[_-]?key"
)
_KEY_TAIL = re.compile(
    rf"{_EDGE}(?:(?P<pw>{_PASSWORD_WORDS})|(?P<sec>{_SECRET_WORDS}))\Z",
    re.IGNORECASE,
)
_ASSIGNED = (
    r"""(?![a-z0-9_])(?:\\?["'`\]]){0,2}[ \t]*(?::=|=>|=(?!=)|:(?=[ \t"'`\\]))[ \t]*"""  # `a:b`: no YAML; `==`: no
    r"""(?:(?P<q>\\?["'`])(?P<qv>[^"'`\\\r\n]{1,500}+)(?P=q)|(?P<uv>[^\s"'`,;&(){}\[\]<>\\]{1,500}+)(?![(\[]))"""
)
# one regex a word, each starting with its literal (run on the lowercased text): ~0.1 ms a word on 250 KB
_KEYWORD_WORDS = (
    ("password", r"pass(?:word|wd|phrase)?"),
    ("password", "pwd"),
    ("password", r"contrase(?:ñ|n)a"),
    ("secret", "secret"),
    ("secret", "token"),
    ("secret", "auth"),
    ("secret", "credentials?"),
    ("secret", "key"),  # only after one of _KEY_PREFIX
)
_KEYWORDS = tuple((kind, word == "key", re.compile(word + _ASSIGNED)) for kind, word in _KEYWORD_WORDS)
_KEYWORDS_I = tuple((kind, is_key, re.compile(rx.pattern, re.IGNORECASE)) for kind, is_key, rx in _KEYWORDS)
_KEY_PREFIX = re.compile(
    r"(?:api|access|secret|private|client|auth|account|service|signing|encryption|master|app|license|session|db"
    r"|database)[_-]?\Z",
    re.IGNORECASE,
)


def _at_edge(text: str, at: int) -> bool:
    """Nothing alphanumeric just before `at`, or a JSON escape (`\\n` in a recorded body is a line start)."""
    return at == 0 or text[at - 1] not in _ALNUM or (at > 1 and text[at - 2] == "\\" and text[at - 1] in "ntr")


def _segment_start(text: str, at: int) -> bool:
    """A key's word starts at `at`: db_password, dbPassword, PASSWORD; not bypass."""
    return _at_edge(text, at) or (text[at].isupper() and not text[at - 1].isupper())


def _keyword_findings(text: str, low: str | None) -> Iterator[Finding]:
    for kind, is_key, regex in _KEYWORDS if low is not None else _KEYWORDS_I:
        for m in regex.finditer(low if low is not None else text):
            word = m.start()
            if is_key:
                prefix = _KEY_PREFIX.search(text, max(0, word - 12), word)
                if prefix is None:
                    continue
                word = prefix.start()
            if not _segment_start(text, word):
                continue
            quoted = m.group("qv") is not None
            start, end = m.span("qv" if quoted else "uv")
            value = text[start:end]
            if _password_value(value, quoted) if kind == "password" else _secret_value(value, quoted):
                yield Finding(kind, start, end)


def _keyword_kind(key: str, value: str) -> str | None:
    """The kind of a value under a credential key in structured data (a JSON object's member), or None."""
    m = _KEY_TAIL.search(key)
    if m is None:
        return None
    if m.group("pw") is not None:
        return "password" if _password_value(value, quoted=True) else None
    return "secret" if _secret_value(value, quoted=True) else None


# --- the table --------------------------------------------------------------------------------------------------

_PEM = r"-{4,5} ?BEGIN [A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)? ?-{4,5}"
_PEM_END = r"-{4,5} ?END [A-Z0-9 ]{0,30}PRIVATE KEY(?: BLOCK)? ?-{4,5}"
_AWS_SECRET_NEAR = re.compile(r"(?:(?<![A-Za-z0-9/+=])|(?<=\\[ntr]))[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")

_RULES: tuple[_Rule, ...] = (
    _Rule(
        "private-key",
        re.compile(rf"{_PEM}(?:.*?{_PEM_END}|[A-Za-z0-9+/=\s\\:,.\-]*)", re.DOTALL),
        hints=("PRIVATE KEY",),
        edge=False,
    ),
    _Rule(
        "private-key",
        re.compile(r"PuTTY-User-Key-File-\d:(?:.*?Private-MAC: *[0-9a-fA-F]+|.*)", re.DOTALL),
        edge=False,
    ),
    _Rule("aws-access-key", _ds(AWSKeyDetector.denylist[0], right=_E)),
    _Rule(
        "aws-secret-key",
        re.compile(
            r"aws_?secret(?:_?access)?_?key(?:\\?[\"'\]]){0,2}[ \t]*(?:=|:|=>)[ \t]*\\?[\"']?"
            r"([a-z0-9/+]{40})(?![a-z0-9/+])"
        ),
        group=1,
        folded=True,
    ),
    _Rule("aws-secret-key", re.compile(AWSKeyDetector.denylist[1].pattern), group=1, folded=True),
    _Rule("anthropic-key", re.compile(r"sk-ant-[a-z]+\d*-[A-Za-z0-9_\-]{20,}")),
    _Rule("openai-key", _ds(OpenAIDetector.denylist[0]), hints=("T3BlbkFJ",), grow=True),
    _Rule("openai-key", re.compile(r"sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{20,}")),
    _Rule("openai-key", re.compile(rf"sk-[A-Za-z0-9]{{48}}{_E}")),
    _Rule("google-api-key", re.compile(r"AIza[0-9A-Za-z_\-]{35}(?![0-9A-Za-z_\-])")),
    _Rule(
        "github-token",
        re.compile(r"gh[pousr]_[A-Za-z0-9_]{36}(?![A-Za-z0-9_])"),
        verify=_ending(GitHubTokenDetector.denylist[0]),
    ),
    _Rule("github-token", re.compile(r"github_pat_[A-Za-z0-9_]{22,}")),
    _Rule(
        "gitlab-token",
        re.compile(r"gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|agent|oas)-[A-Za-z0-9_\-]{20,}"),
        verify=re.compile("|".join(_ending(p).pattern for p in GitLabTokenDetector.denylist)),
    ),
    _Rule("gitlab-token", _ds(GitLabTokenDetector.denylist[1])),  # GR1348941...
    _Rule("slack-token", re.compile(SlackDetector.denylist[0].pattern), folded=True, grow=True),
    _Rule("slack-webhook", re.compile(SlackDetector.denylist[1].pattern, re.VERBOSE), grow=True, edge=False),
    _Rule(
        "stripe-key",  # StripeDetector's regex, widened to today's longer keys and to test keys
        re.compile(r"k_(?:live|test)_[0-9a-zA-Z]{24,}"),
        verify=re.compile(rf"(?:{StripeDetector.denylist[0].pattern}[0-9a-zA-Z]*|[rs]k_test_[0-9a-zA-Z]{{24,}})\Z"),
        back=1,
    ),
    _Rule("huggingface-token", re.compile(rf"hf_[A-Za-z0-9]{{34,}}{_E}"), check=_mixed_case),
    _Rule("npm-token", re.compile(rf"npm_[A-Za-z0-9]{{36}}{_E}")),
    _Rule(
        "npm-token",
        re.compile(r"_authToken=[ \t]*([^\s\"'\\]+)"),
        group=1,
        check=lambda v: not _not_a_value(v),
        verify=re.compile(r"//[^\s/]+(?:/[^\s:]*)?/:_authToken=[ \t]*[^\s\"'\\]+\Z"),
        back=300,
        edge=False,
    ),
    _Rule("sendgrid-key", _ds(SendGridDetector.denylist[0], right=r"(?![A-Za-z0-9_\-])")),
    *(_Rule("pypi-token", _ds(pattern)) for pattern in PypiTokenDetector.denylist),
    _Rule("square-oauth", _ds(SquareOAuthDetector.denylist[0])),
    _Rule(
        "azure-storage-key",
        re.compile("AccountKey=(" + AzureStorageKeyDetector.denylist[0].pattern.removeprefix("AccountKey=") + ")"),
        group=1,
    ),
    _Rule(
        "mailchimp-key",
        re.compile(r"-us[0-9]{1,2}(?!\d)"),
        verify=_ending(MailchimpDetector.denylist[0]),
        back=32,
    ),
    _Rule(
        "discord-token",
        re.compile(r"\.[a-zA-Z\d_-]{6}\.[a-zA-Z\d_-]{27}(?![A-Za-z0-9_\-])"),
        verify=_ending(DiscordBotTokenDetector.denylist[0]),
        back=26,
    ),
    _Rule(
        "telegram-token",
        re.compile(r":[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"),
        verify=_ending(TelegramBotTokenDetector.denylist[0]),
        back=10,
    ),
    *(_Rule("twilio-key", _ds(pattern, right=_E)) for pattern in TwilioKeyDetector.denylist),
    _Rule(
        "jwt",
        re.compile(r"eyJ[A-Za-z0-9_\-]{5,}=*\.[A-Za-z0-9_\-]{5,}=*(?:\.[A-Za-z0-9_\-]+=*)?"),
        check=_jwt,
    ),
    _Rule("bridge-token", re.compile(rf"{re.escape(BRIDGE_PREFIX)}[A-Za-z0-9_\-]{{32,}}")),
    # generic forms last: on an equal span the specific kind above wins
    _Rule(
        "url-password",
        BasicAuthDetector.denylist[0],
        group=1,
        check=lambda v: not _not_a_value(v),
        edge=False,
    ),
    _Rule(
        "bearer-token",
        re.compile(r"bearer[ \t]+([a-z0-9._~+/\-]{16,}=*)"),
        group=1,
        check=lambda v: bool(_HAS_DIGIT.search(v)) and not _not_a_value(v),
        folded=True,
    ),
    _Rule(
        "basic-auth",
        re.compile(r"authorization(?:\\?[\"'])?[ \t]*[:=][ \t]*(?:\\?[\"'])?basic[ \t]+([a-z0-9+/]{8,}={0,2})"),
        group=1,
        folded=True,
    ),
)
_FOLDED_I = {rule: re.compile(rule.regex.pattern, re.IGNORECASE) for rule in _RULES if rule.folded}


def _aws_secrets_near(text: str, access: Finding) -> Iterator[Finding]:
    """A 40-character secret access key close to its key id (as in a pasted credentials block)."""
    lo, hi = max(0, access.start - 300), min(len(text), access.end + 300)
    for m in _AWS_SECRET_NEAR.finditer(text, lo, hi):
        value = m.group()
        if _mixed_case(value) and _HAS_DIGIT.search(value):
            yield Finding("aws-secret-key", m.start(), m.end())


class Redactor:
    def __init__(self, patterns: Sequence[tuple[str, str]] = ()) -> None:
        """patterns: operator-added (kind, regex) pairs from `[redaction] patterns`; kind must match
        ^[a-z0-9]+(-[a-z0-9]+)*$ ; the regex's whole match is the secret, or its group 1 when it has groups.
        Raises ValueError naming the bad pattern for an invalid regex or kind."""
        operator = []
        for kind, regex in patterns:
            if not isinstance(kind, str) or not KIND.match(kind):
                raise ValueError(f"redaction pattern {kind!r}: the kind must be lowercase words joined by '-'")
            try:
                compiled = re.compile(regex)
            except (re.error, TypeError) as e:
                raise ValueError(f"redaction pattern {kind!r} = {regex!r}: not a valid regex ({e})") from None
            operator.append(_Rule(kind, compiled, group=1 if compiled.groups else 0))
        self._rules: tuple[_Rule, ...] = (*operator, *_RULES)

    def find(self, text: str) -> list[Finding]:
        """The secrets in text: sorted, non-overlapping (the longest wins, then the earlier rule)."""
        low: str | None = text.lower()
        if len(low) != len(text):  # a few letters lengthen when lowered: then IGNORECASE, slower but aligned
            low = None
        candidates: list[tuple[Finding, int]] = []
        for rank, rule in enumerate(self._rules):
            if rule.hints and not any(h in text for h in rule.hints):
                continue
            if not rule.folded:
                matches = rule.regex.finditer(text)
            else:
                matches = rule.regex.finditer(low) if low is not None else _FOLDED_I[rule].finditer(text)
            for m in matches:
                first = m.start()
                if rule.verify is not None:
                    whole = rule.verify.search(text, max(0, first - rule.back), m.end())
                    if whole is None:
                        continue
                    first = whole.start()
                if rule.edge and not _at_edge(text, first):
                    continue
                start, end = m.span(rule.group) if rule.group else (first, m.end())
                if start < 0 or start == end or (rule.check and not rule.check(text[start:end])):
                    continue
                if rule.grow:
                    while end < len(text) and text[end] in _TOKEN_CHARS:
                        end += 1
                found = Finding(rule.kind, start, end)
                candidates.append((found, rank))
                if rule.kind == "aws-access-key":
                    candidates.extend((near, rank) for near in _aws_secrets_near(text, found))
        candidates.extend((found, len(self._rules)) for found in _keyword_findings(text, low))
        return _resolve(candidates)

    def redact(self, text: str) -> tuple[str, tuple[str, ...]]:
        """Each secret replaced by [REDACTED:<kind>]; (new text, sorted unique kinds). The same object back when
        nothing was found."""
        findings = self.find(text)
        if not findings:
            return text, ()
        parts, at = [], 0
        for f in findings:
            parts += [text[at : f.start], REDACTED.format(kind=f.kind)]
            at = f.end
        parts.append(text[at:])
        return "".join(parts), tuple(sorted({f.kind for f in findings}))

    def redact_json(self, body: bytes) -> tuple[bytes, tuple[str, ...]]:
        """The raw JSON body with only each secret's bytes replaced by `[REDACTED:<kind>]`, every other byte as
        it was (no re-serialization, whatever the sender's escaping). Secrets are looked for in string values
        (not keys), and a credential key's value is judged as `key: "value"` would be. The same object back when
        nothing was found; (body, ()) for a body that is not JSON."""
        spans = self._json_spans(body)
        if not spans:
            return body, ()
        parts, at = [], 0
        for start, end, kind in spans:
            parts += [body[at:start], REDACTED.format(kind=kind).encode()]
            at = end
        parts.append(body[at:])
        return b"".join(parts), tuple(sorted({kind for _, _, kind in spans}))

    def kinds_in_json(self, body: bytes) -> tuple[str, ...]:
        """The kinds redact_json would replace (for "block" mode)."""
        return tuple(sorted({kind for _, _, kind in self._json_spans(body)}))

    def _json_spans(self, body: bytes) -> list[tuple[int, int, str]]:
        """(start, end, kind) byte spans of the secrets in a JSON body's string values, in order. The values are
        searched as one text (one pass of each detector, not one per value), joined by a separator no detector
        crosses; a finding that still runs past its value is cut at the value's end."""
        values: list[tuple[int, bytes, str]] = []  # (offset of the content in body, raw content, decoded)
        members: list[tuple[int, bytes]] = []  # (index in values, raw key) of values under an object key
        key_end, key = -1, b""
        try:
            for m in _JSON_TOKEN.finditer(body):
                start, end = m.span(1)
                raw = body[start + 1 : end - 1]
                if m.group(2):  # a key
                    key_end, key = m.end(), raw
                    continue
                if key_end >= 0 and (key_end == start or body[key_end:start].isspace()):
                    members.append((len(values), key))
                key_end = -1
                values.append((start + 1, raw, _decode(raw)))
            if not values:
                return []
            joined = _SEPARATOR.join(text for _, _, text in values)
            starts = list(itertools.accumulate((len(text) + len(_SEPARATOR) for _, _, text in values[:-1]), initial=0))
            per_value: dict[int, list[Finding]] = {}
            for f in self.find(joined):
                i = bisect.bisect_right(starts, f.start) - 1
                text = values[i][2]
                lo = f.start - starts[i]
                if lo < len(text):
                    per_value.setdefault(i, []).append(Finding(f.kind, lo, min(f.end - starts[i], len(text))))
            for i, raw_key in members:
                if i not in per_value and _KEY_WORD_HINT.search(raw_key):
                    text = values[i][2]
                    if kind := _keyword_kind(_decode(raw_key), text):
                        per_value[i] = [Finding(kind, 0, len(text))]
            spans = []
            for i in sorted(per_value):
                at, raw, text = values[i]
                offsets = None if raw.isascii() and b"\\" not in raw else _char_offsets(raw)
                for f in per_value[i]:
                    lo, hi = (f.start, f.end) if offsets is None else (offsets[f.start], offsets[f.end])
                    spans.append((at + lo, at + hi, f.kind))
            if spans:
                json.loads(body)  # only a JSON body is rewritten
        except (ValueError, UnicodeDecodeError, IndexError):
            return []
        return spans


_JSON_TOKEN = re.compile(rb'("(?:[^"\\]++|\\.)*+")(\s*:)?', re.DOTALL)  # a string, and the colon after a key
_SEPARATOR = "\n\x00\n"
_KEY_WORD_HINT = re.compile(rb"(?i)pass|pwd|secret|token|auth|credential|key|contrase")


def _decode(raw: bytes) -> str:
    """A JSON string's content (between its quotes) as text."""
    if b"\\" not in raw:
        return raw.decode("utf-8")
    return json.loads(b'"' + raw + b'"')


def _char_offsets(raw: bytes) -> list[int]:
    """For each character of the decoded JSON string content raw, its offset in raw; then len(raw)."""
    offsets, i, n = [], 0, len(raw)
    while i < n:
        offsets.append(i)
        b = raw[i]
        if b == 0x5C:  # an escape: \n, \", or \uXXXX (a surrogate pair of them decodes to one character)
            if raw[i + 1] == 0x75:
                high = int(raw[i + 2 : i + 6], 16)
                pair = 0xD800 <= high < 0xDC00 and raw[i + 6 : i + 8] == b"\\u"
                i += 12 if pair and 0xDC00 <= int(raw[i + 8 : i + 12], 16) < 0xE000 else 6
            else:
                i += 2
        else:
            i += 1 if b < 0x80 else 4 if b >= 0xF0 else 3 if b >= 0xE0 else 2
    offsets.append(n)
    return offsets


def _resolve(candidates: list[tuple[Finding, int]]) -> list[Finding]:
    """Non-overlapping findings: the longest first, then the earlier rule, then the earlier one in the text."""
    if not candidates:
        return []
    candidates.sort(key=lambda c: (c[0].start - c[0].end, c[1], c[0].start))
    taken: list[Finding] = []
    for found, _ in candidates:
        if all(found.end <= t.start or found.start >= t.end for t in taken):
            taken.append(found)
    return sorted(taken, key=lambda f: f.start)
