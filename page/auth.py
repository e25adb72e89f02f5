"""Who may use the page: the credentials file, its hashed passwords and the login check Gradio calls.

A credentials file holds one `user:password` line each (blank lines and `#` comments skipped); the password may
be stored hashed, `user:pbkdf2_sha256$ITERATIONS$SALT$HASH` (hashlib.pbkdf2_hmac, salt and hash base64), made by

    python -m page.auth hash-password          # reads the password from stdin, prints the pbkdf2_sha256 form

A failed login waits before it answers, longer after each failure of the same user (up to MAX_DELAY_S).
"""
import asyncio
import base64
import getpass
import hashlib
import hmac
import ipaddress
import os
import secrets
import sys

from utils.script.errors import BadInputError, MissingInputError

SCHEME = "pbkdf2_sha256"
ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
AUTH_ENV = "COREECHO_AUTH_FILE"
FIRST_DELAY_S, MAX_DELAY_S = 1.0, 16.0  # a failed login's wait, doubled per failure of the same user


def hash_password(password: str, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return "$".join([SCHEME, str(iterations), base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def _parse_hash(stored: str):
    """(iterations, salt, digest) of a pbkdf2_sha256 string; ValueError when it is not one."""
    scheme, iterations, salt, digest = stored.split("$")
    if scheme != SCHEME or int(iterations) < 1:
        raise ValueError(stored)
    return int(iterations), base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)


def password_matches(stored: str, password: str) -> bool:
    """`password` against a stored password, hashed or clear, in constant time for a given stored value."""
    if stored.startswith(SCHEME + "$"):
        iterations, salt, digest = _parse_hash(stored)
        return hmac.compare_digest(hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations), digest)
    return hmac.compare_digest(stored.encode(), password.encode())


def read_credentials(path) -> dict:
    """{user: stored password} of a credentials file; BadInputError naming the file and line (never its text,
    which may be a password) for a line that is not `user:password`."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise BadInputError(f"{path}: cannot read the credentials file ({getattr(e, 'strerror', None) or e})")
    users = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, colon, stored = line.strip().partition(":")
        problem = "" if colon and user and stored else "not user:password"
        if not problem and user in users:
            problem = f"user {user!r} again"
        if not problem and stored.startswith(SCHEME + "$"):
            try:
                _parse_hash(stored)
            except ValueError:
                problem = f"not {SCHEME}$ITERATIONS$SALT$HASH (python -m page.auth hash-password)"
        if problem:
            raise BadInputError(f"{path}, line {number}: {problem}")
        users[user] = stored
    if not users:
        raise BadInputError(f"{path}: no user:password line")
    return users


class Login:
    """The check behind Gradio's login form (`launch(auth=Login(...).check)`): an async function, so that the
    hash and the wait of a failed login run off the server's event loop."""

    def __init__(self, users: dict, sleep=asyncio.sleep):
        self.users, self.sleep = users, sleep
        self.failures = {}  # known user (or None for any unknown name) -> failed logins since the last success
        self.decoy = hash_password(secrets.token_hex(8))  # an unknown user costs as much as a known one

    async def check(self, username: str, password: str) -> bool:
        stored = self.users.get(username)
        ok = await asyncio.to_thread(password_matches, stored or self.decoy, password)
        key = username if stored else None
        if ok and stored:
            self.failures.pop(key, None)
            return True
        failures = self.failures[key] = self.failures.get(key, 0) + 1
        await self.sleep(min(MAX_DELAY_S, FIRST_DELAY_S * 2 ** (failures - 1)))
        return False


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False


def auth_file(opt_auth_file):
    """--auth_file, else the file the COREECHO_AUTH_FILE environment variable names, else None."""
    return opt_auth_file or os.environ.get(AUTH_ENV) or None


def launch_access(host: str, auth_path, certfile, keyfile) -> dict:
    """Gradio launch()'s arguments for who may reach the page and how: a login whenever a credentials file is
    given (--auth_file or $COREECHO_AUTH_FILE), HTTPS with a certificate. Off loopback, no credentials file is
    one line and SystemExit(2), before any model is loaded or socket opened; no certificate, one warning line."""
    loopback = is_loopback(host)
    path = auth_file(auth_path)
    if path is None and not loopback:
        print(f"error: --host {host} lets other machines reach the page: give a credentials file with --auth_file "
              f"FILE or {AUTH_ENV}=FILE (one user:password line each; python -m page.auth hash-password hashes one)",
              file=sys.stderr, flush=True)
        raise SystemExit(2)
    if bool(certfile) != bool(keyfile):
        raise BadInputError("--ssl_certfile and --ssl_keyfile go together: give both for HTTPS")
    for name in (certfile, keyfile):
        if name and not os.path.isfile(name):
            raise MissingInputError(f"{name}: no such file (--ssl_certfile / --ssl_keyfile)")
    if not loopback and not certfile:
        print(f"warning: --host {host} without --ssl_certfile/--ssl_keyfile: logins, uploads and results travel "
              "in clear text (HTTP)", file=sys.stderr, flush=True)
    login = Login(read_credentials(path)) if path else None
    # ssl_verify is only Gradio's request to itself at start-up, on 127.0.0.1: no name on a team's certificate
    return {"auth": login.check if login else None, "ssl_certfile": certfile, "ssl_keyfile": keyfile,
            "ssl_verify": False}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["hash-password"]:
        print("usage: python -m page.auth hash-password  (the password on stdin; prints the HASH of user:HASH)",
              file=sys.stderr)
        return 2
    # typed without echo at a terminal; else the first line of stdin (never an argument: `ps` shows those)
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("error: an empty password (give it on stdin)", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
