"""What an API key looks like: `kanri_<prefix>_<secret>`, made, split and hashed here.

The prefix (8 lowercase letters and digits) is public: it names the key in lists and finds its row
through a unique index. The secret (40 letters and digits, about 238 random bits) is never stored:
its SHA-256 is. A slow password hash (PBKDF2, Argon2) exists to make guessing *weak, human* secrets
costly; a secret of 238 random bits cannot be guessed at any speed, and a slow hash would cost
every API request tens of milliseconds. Letters and digits only, so a double click selects it all.
"""
import hashlib
import hmac
import re
import secrets
import string

PREFIX_ALPHABET = string.ascii_lowercase + string.digits
SECRET_ALPHABET = string.ascii_letters + string.digits
PREFIX_LENGTH = 8
SECRET_LENGTH = 40
KEY_PATTERN = re.compile(rf"kanri_([a-z0-9]{{{PREFIX_LENGTH}}})_([A-Za-z0-9]{{{SECRET_LENGTH}}})")


def new_prefix() -> str:
    return "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))


def new_secret() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def full_key(prefix: str, secret: str) -> str:
    return f"kanri_{prefix}_{secret}"


def split_key(raw: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed key, else None."""
    match = KEY_PATTERN.fullmatch(raw.strip())
    return (match.group(1), match.group(2)) if match else None


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
