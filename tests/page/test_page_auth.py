"""page.auth: the credentials file, hashed passwords (checked against hashlib's PBKDF2 test vector), the login
check with its wait after a failure, and the start-up decision for an address other than loopback."""
import asyncio
import base64
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from page import auth
from utils.script.errors import BadInputError


def test_a_hashed_password_is_pbkdf2_sha256_and_matches_only_itself():
    # RFC 7914 section 11's PBKDF2-HMAC-SHA256 vector: P="passwd", S="salt", c=1, dkLen=64 (first 32 bytes here)
    stored = auth.hash_password("passwd", iterations=1, salt=b"salt")
    scheme, iterations, salt, digest = stored.split("$")
    assert (scheme, iterations, base64.b64decode(salt)) == ("pbkdf2_sha256", "1", b"salt")
    assert base64.b64decode(digest).hex() == "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
    assert auth.password_matches(stored, "passwd") and not auth.password_matches(stored, "passwd ")
    assert auth.password_matches("plain", "plain") and not auth.password_matches("plain", "Plain")
    assert auth.hash_password("x", iterations=2) != auth.hash_password("x", iterations=2)  # a fresh salt each


def test_hash_password_reads_stdin_and_its_output_logs_in(tmp_path):
    made = subprocess.run([sys.executable, "-m", "page.auth", "hash-password"], input="s3cret word\n",
                          capture_output=True, text=True, cwd=REPO_ROOT, check=True).stdout.strip()
    assert made.startswith(f"pbkdf2_sha256${auth.ITERATIONS}$") and "s3cret" not in made
    (tmp_path / "users.txt").write_text(f"# the team\n\nana:{made}\nben:plain:with:colons\n")
    users = auth.read_credentials(tmp_path / "users.txt")
    assert sorted(users) == ["ana", "ben"] and users["ben"] == "plain:with:colons"
    assert auth.password_matches(users["ana"], "s3cret word")
    refused = subprocess.run([sys.executable, "-m", "page.auth", "hash-password", "pw"], capture_output=True,
                             text=True, cwd=REPO_ROOT)
    assert refused.returncode == 2 and refused.stdout == ""  # no password on the command line


@pytest.mark.parametrize("text, line, words", [("ana:pw\nben\n", 2, "not user:password"),
                                               ("ana:pw\n:pw\n", 2, "not user:password"),
                                               ("ana:pw\n# x\nana:other\n", 3, "user 'ana' again"),
                                               ("ana:pbkdf2_sha256$10$c2FsdA==\n", 1, "hash-password")])
def test_a_malformed_credentials_file_is_one_line_with_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "users.txt"
    path.write_text(text)
    with pytest.raises(BadInputError) as error:
        auth.read_credentials(path)
    message = str(error.value)
    assert message.startswith(f"{path}, line {line}: ") and words in message and "\n" not in message
    assert "pw" not in message.split(": ", 1)[1]  # the file's text (a password) is never quoted
    (tmp_path / "empty.txt").write_text("# nobody\n")
    with pytest.raises(BadInputError, match="empty.txt: no user:password line"):
        auth.read_credentials(tmp_path / "empty.txt")


def test_a_failed_login_waits_longer_each_time_and_a_success_resets_it():
    waits = []

    async def sleep(seconds):
        waits.append(seconds)

    login = auth.Login({"ana": auth.hash_password("right", iterations=10)}, sleep=sleep)
    tries = [("ana", "wrong"), ("ana", "wrong"), ("ana", "right"), ("ana", "wrong"), ("nobody", "right"),
             ("ana", "Right")]
    results = [asyncio.run(login.check(user, password)) for user, password in tries]
    assert results == [False, False, True, False, False, False]
    assert waits == [1.0, 2.0, 1.0, 1.0, 2.0]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "echo-server.example.org"])
def test_off_loopback_without_credentials_is_one_line_and_exit_2(host, capsys, monkeypatch):
    monkeypatch.delenv(auth.AUTH_ENV, raising=False)
    with pytest.raises(SystemExit) as stopped:
        auth.launch_access(host, None, None, None)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: --host {host} ") and "--auth_file" in err


def test_credentials_from_the_environment_and_the_plain_http_warning(tmp_path, capsys, monkeypatch):
    (tmp_path / "users.txt").write_text("ana:pw\n")
    monkeypatch.setenv(auth.AUTH_ENV, str(tmp_path / "users.txt"))
    access = auth.launch_access("0.0.0.0", None, None, None)
    assert callable(access["auth"]) and asyncio.run(access["auth"]("ana", "pw"))
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: --host 0.0.0.0 without --ssl_certfile")
    monkeypatch.delenv(auth.AUTH_ENV)
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):  # loopback: no login needed, no warning
        assert auth.launch_access(host, None, None, None)["auth"] is None
    assert capsys.readouterr().err == ""
    with pytest.raises(BadInputError, match="go together"):
        auth.launch_access("127.0.0.1", None, str(tmp_path / "users.txt"), None)
    with pytest.raises(FileNotFoundError, match="missing.pem: no such file"):
        auth.launch_access("127.0.0.1", None, str(tmp_path / "users.txt"), str(tmp_path / "missing.pem"))
