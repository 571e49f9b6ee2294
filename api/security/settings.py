"""Security settings: token verification, integrator keys, limits and browser-facing headers."""

from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from events.signing import short_key_ids

# Known only to development set-ups: refused anywhere else (see `_no_development_secret_elsewhere`).
DEVELOPMENT_SECRET = "citizen-context-development-only-signing-secret"  # noqa: S105 (refused elsewhere)
DEVELOPMENT_KID = "development"
DEVELOPMENT_ISSUER = "citizen-context-development"
DEVELOPMENT_PSEUDONYM_KEY = "citizen-context-development-only-pseudonym-key"


class SecuritySettings(BaseSettings):
    """How callers are authenticated and what protects the API."""

    # The secrets are secrets: an error about a setting names it without its value.
    model_config = SettingsConfigDict(
        env_prefix="CITIZEN_CONTEXT_SECURITY_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    environment: Literal["development", "production"] = Field(
        default="development",
        description="`production` refuses the development secrets and `citizen-context token`.",
    )
    jwt_issuer: str = Field(
        default=DEVELOPMENT_ISSUER, description="Expected `iss` of tokens (set it outside development)."
    )
    jwt_audience: str = Field(default="citizen-context", description="Expected `aud` of tokens.")
    jwt_secrets: dict[str, SecretStr] = Field(
        default_factory=lambda: {DEVELOPMENT_KID: SecretStr(DEVELOPMENT_SECRET)},
        description='HS256 keys by `kid`, as JSON: {"2026-11": "…"}; list two while rotating.',
    )
    jwt_public_keys: dict[str, str] = Field(
        default_factory=dict,
        description="RS256/ES256 public keys (PEM) by `kid`, as JSON; list two while rotating.",
    )
    jwks_url: str = Field(
        default="",
        description="JWKS URL of an identity provider (Keycloak, Entra ID); keys fetched and cached.",
    )
    jwks_cache_s: int = Field(default=300, ge=1, description="How long fetched JWKS keys are trusted.")
    jwks_refetch_cooldown_s: float = Field(
        default=30,
        ge=0,
        description="A token with an unknown `kid` fetches the JWKS again at most this often.",
    )
    roles_claim: str = Field(
        default="roles",
        description="Dotted path of the roles claim (Keycloak: `realm_access.roles`; Entra ID: `roles`).",
    )
    clock_skew_s: int = Field(default=30, ge=0, description="Leeway for `exp` and `nbf`.")
    development_signing_kid: str = Field(
        default=DEVELOPMENT_KID, description="Which of `jwt_secrets` `citizen-context token` signs with."
    )
    pseudonym_key: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_PSEUDONYM_KEY),
        description="Key of the citizen pseudonyms in logs and the audit trail (keep it stable).",
    )
    stream_ticket_ttl_s: int = Field(default=30, ge=1, le=300, description="Lifetime of a stream ticket.")
    access_check_s: float = Field(
        default=5, gt=0, description="How often an open stream re-checks that its access still holds."
    )
    agent_rate: str = Field(
        default="20/second", description="Requests each agent may make (e.g. `20/second`, `600/minute`)."
    )
    key_rate: str = Field(default="200/second", description="Requests each integrator key may make.")
    max_body_bytes: int = Field(
        default=65_536, ge=1024, description="Largest request body (event ingestion has its own 1 MiB)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description='Origins browsers may call from, as JSON: ["https://desk.example"].'
    )
    hsts: bool = Field(default=False, description="Send Strict-Transport-Security (behind TLS only).")

    @property
    def development(self) -> bool:
        """True in a development set-up."""
        return self.environment == "development"

    @field_validator("agent_rate", "key_rate")
    @classmethod
    def _a_rate(cls, value: str) -> str:
        # Judged with the other settings, so a wrong one ends the command with its message (not a traceback
        # from the API's start, after the migrations ran).
        from api.security.rate_limit import parse_rate  # the limiter's own reading of it

        parse_rate(value)
        return value

    @model_validator(mode="after")
    def _no_development_secret_elsewhere(self) -> Self:
        # Every problem at once: a deployment is put right in one round, not one setting per start.
        if not self.development and (problems := self._production_problems()):
            raise ValueError("; ".join(problems))
        return self

    def _production_problems(self) -> list[str]:
        problems = []
        if any(secret.get_secret_value() == DEVELOPMENT_SECRET for secret in self.jwt_secrets.values()):
            problems.append(
                "the development signing secret is refused outside development: set "
                "CITIZEN_CONTEXT_SECURITY_JWT_SECRETS (or CITIZEN_CONTEXT_SECURITY_JWKS_URL, with "
                "CITIZEN_CONTEXT_SECURITY_JWT_SECRETS={})"
            )
        if short := short_key_ids(self.jwt_secrets, 32):
            problems.append(
                f"CITIZEN_CONTEXT_SECURITY_JWT_SECRETS: HS256 secrets need at least 32 bytes (256 bits); "
                f"shorter: {', '.join(short)}"
            )
        if not (self.jwt_secrets or self.jwt_public_keys or self.jwks_url):
            problems.append(
                "configure at least one token verification key: CITIZEN_CONTEXT_SECURITY_JWT_SECRETS, "
                "CITIZEN_CONTEXT_SECURITY_JWT_PUBLIC_KEYS or CITIZEN_CONTEXT_SECURITY_JWKS_URL"
            )
        if self.jwks_url and not self.jwks_url.startswith("https://"):
            problems.append("CITIZEN_CONTEXT_SECURITY_JWKS_URL must use https outside development")
        if self.jwt_issuer == DEVELOPMENT_ISSUER:
            problems.append(
                "set CITIZEN_CONTEXT_SECURITY_JWT_ISSUER (your identity provider's `iss`) outside development"
            )
        # No minimum length for the pseudonym key: a deployment's key cannot change without splitting every
        # citizen's trail in two (README), so one that loaded before must keep loading.
        if self.pseudonym_key.get_secret_value() == DEVELOPMENT_PSEUDONYM_KEY:
            problems.append("set CITIZEN_CONTEXT_SECURITY_PSEUDONYM_KEY outside development")
        return problems
