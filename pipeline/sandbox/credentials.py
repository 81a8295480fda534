"""The credentials a sandbox accepts: its defaults are what the demo, the tests and the docs use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    public_key: str = "rpub-sandbox"
    secret_key: str = "rsec-sandbox"
    legacy_api_key: str = "sandbox-legacy-api-key"
    app_id: str = "sandbox-app-id"
    app_secret: str = "sandbox-app-secret"
    webhook_api_key: str = "sandbox-webhook-api-key"
    partner_token: str = "sandbox-partner-token"
    partner_client_id: str = "rspub_sandbox"
    partner_client_secret: str = "rsec_sandbox"

    def as_environment(self, parent_account_id: str = "1000000000000000001") -> dict[str, str]:
        """The ${VAR}s the example job files read, set to this sandbox's credentials (demo and tests)."""
        return {
            "ROKT_PUBLIC_KEY": self.public_key, "ROKT_SECRET_KEY": self.secret_key,
            "ROKT_LEGACY_API_KEY": self.legacy_api_key, "ROKT_APP_ID": self.app_id, "ROKT_APP_SECRET": self.app_secret,
            "ROKT_WEBHOOK_API_KEY": self.webhook_api_key, "ROKT_PARTNER_TOKEN": self.partner_token,
            "ROKT_PARTNER_CLIENT_ID": self.partner_client_id, "ROKT_PARTNER_CLIENT_SECRET": self.partner_client_secret,
            "ROKT_PARENT_ACCOUNT_ID": parent_account_id,
        }

    def described(self) -> list[str]:
        """What each family accepts, for the banner and --help."""
        return [
            f"audience import v3: public key {self.public_key}, secret key {self.secret_key}",
            f"audience import legacy: API key {self.legacy_api_key}",
            f"data deletion: app id {self.app_id}, app secret {self.app_secret}",
            f"nurture unsubscribe: API key {self.webhook_api_key}",
            f"partnerships (network privacy, account deletion): client id {self.partner_client_id}, client secret "
            f"{self.partner_client_secret} (token URL <sandbox>/api/v1/oauth/token), or the fixed token {self.partner_token}",
        ]
