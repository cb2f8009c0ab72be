"""Auth settings from the environment (YANGYI_AUTH_*); every default documented here.

    YANGYI_AUTH_COOKIE_SECURE        auto | always | never. auto: Secure when the request came over
                                     HTTPS (directly, or via a proxy uvicorn trusts with --proxy-headers)
    YANGYI_AUTH_SESSION_IDLE_MINUTES a session unused this long ends (120)
    YANGYI_AUTH_SESSION_MAX_HOURS    a session ends this long after login whatever its use (12)
    YANGYI_AUTH_LOGIN_WINDOW_S       sliding window of the login rate limit (900 = 15 min) [A]
    YANGYI_AUTH_LOGIN_MAX_PER_ACCOUNT failed logins per account within the window (5) [A]
    YANGYI_AUTH_LOGIN_MAX_PER_IP     failed logins per address within the window (30: an office NAT
                                     puts a whole township behind one address) [A]
    YANGYI_AUTH_TOKEN_DEFAULT_DAYS / _TOKEN_MAX_DAYS   integration token lifetime (90 / 366)
    YANGYI_AUTH_PASSWORD_MIN_LENGTH  (10)
    YANGYI_AUTH_ARGON2_TIME_COST / _MEMORY_KIB / _PARALLELISM   argon2id parameters; defaults are
                                     RFC 9106's second recommendation (t=3, 64 MiB, p=4), which is
                                     argon2-cffi's default. Changing them rehashes each password at
                                     its owner's next login.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CookieSecure(StrEnum):
    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YANGYI_AUTH_", extra="forbid")

    cookie_name: str = Field(default="yangyi_session", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    cookie_secure: CookieSecure = CookieSecure.AUTO
    csrf_header: str = "X-CSRF-Token"
    session_idle_minutes: int = Field(default=120, ge=1)
    session_max_hours: int = Field(default=12, ge=1)
    login_window_s: int = Field(default=900, ge=1)
    login_max_per_account: int = Field(default=5, ge=1)
    login_max_per_ip: int = Field(default=30, ge=1)
    token_default_days: int = Field(default=90, ge=1)
    token_max_days: int = Field(default=366, ge=1)
    password_min_length: int = Field(default=10, ge=8)
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
