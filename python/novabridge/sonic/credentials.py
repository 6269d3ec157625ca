"""Where a session's credentials come from, named by source and never by value.

When `SonicConfig` gives no keys, the worker signs with what the SDK's own provider chain resolves: environment
variables, then the active profile of the shared files (keys, session keys, a ``credential_process``), then any
provider package installed beside the SDK (SSO, assumed roles, container and instance roles come as separate
``aws-credentials-*`` packages). `find_credentials` builds that chain as the client does on its first call and asks
its resolvers in order, so `novabridge doctor` can say which one answers, run in the worker's own interpreter and
environment. Nothing it returns holds a key, a secret or a token.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime
from typing import Any

from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from smithy_aws_core.config import ConfigError, ConfigSource, MergedConfig
from smithy_aws_core.identity import AWSCredentialsIdentity
from smithy_aws_core.identity.chain import IdentityChain, IdentityChainError, StandardProvider
from smithy_core.exceptions import SmithyIdentityError

from novabridge.sonic.transport import SonicTransport

_PROFILE_SOURCES = (
    ("role_arn", StandardProvider.PROFILE_ASSUME_ROLE, "assumes a role (role_arn)"),
    ("web_identity_token_file", StandardProvider.PROFILE_WEB_IDENTITY, "uses a web identity token"),
    ("sso_session", StandardProvider.PROFILE_SSO_SESSION, "signs in with IAM Identity Center (sso_session)"),
    ("sso_start_url", StandardProvider.PROFILE_SSO_SESSION, "signs in with IAM Identity Center (sso_start_url)"),
)
"""Profile settings whose credentials only a provider package outside the SDK's core resolves."""


@dataclasses.dataclass(frozen=True)
class CredentialSource:
    """Which provider of the SDK's chain resolves credentials, and where they come from; no values."""

    provider: str | None
    """The SDK's name of the provider that resolved them (``Environment``, ``ProfileStaticKeys``, ...); None: none."""
    where: str
    """Where they come from, in words; or, when none resolved, what was looked at."""
    temporary: bool = False
    """They carry a session token: an assumed role, SSO, an instance or container role."""
    expires_at: float | None = None
    """When they expire (seconds since the epoch), if the provider says."""
    hints: tuple[str, ...] = ()
    """Why the providers that were asked found nothing, and sources configured that need a package to be used."""
    profile: str = "default"
    """The active profile of the shared files."""
    profile_region: str | None = None
    """The profile's ``region`` setting (novabridge does not read it: `SonicConfig.region` is what counts)."""

    def as_dict(self) -> dict[str, Any]:
        """The fields, for JSON."""
        return dataclasses.asdict(self)


def _shared_files() -> str:
    credentials = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials"
    config = os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"
    return f"{credentials} or {config}"


def _where(provider: str, profile: str) -> str:
    if provider == StandardProvider.ENVIRONMENT.canonical_name:
        names = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        if os.environ.get("AWS_SESSION_TOKEN"):
            names.append("AWS_SESSION_TOKEN")
        return f"environment variables {', '.join(names)}"
    files = _shared_files()
    if provider == StandardProvider.PROFILE_STATIC_KEYS.canonical_name:
        return f"the keys of profile {profile!r} in {files}"
    if provider == StandardProvider.PROFILE_SESSION_KEYS.canonical_name:
        return f"the session keys of profile {profile!r} in {files}"
    if provider == StandardProvider.PROFILE_CREDENTIAL_PROCESS.canonical_name:
        return f"the credential_process of profile {profile!r} in {files}"
    return f"the SDK's {provider} provider (profile {profile!r})"


def _said(error: BaseException) -> str:
    """What a provider said, without what a credential process wrote to stderr (it may hold anything)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if text.startswith("Credential process failed with exit code"):
        text = text.split(":", 1)[0]
    return text[:200]


def _profile_hints(files: MergedConfig, profile: str) -> list[str]:
    hints = []
    for key, slot, what in _PROFILE_SOURCES:
        if files.get(profile, key) is not None:
            hints.append(
                f"profile {profile!r} {what}: the SDK resolves that only with the {slot.module_suggestion!r} package "
                "installed in the worker's environment"
            )
    return hints


async def find_credentials(profile: str | None = None, region: str = "us-east-1") -> CredentialSource:
    """The source the SDK's chain finds for a session with no keys in its config, as the worker would sign.

    ``profile`` is `SonicConfig.profile` (None: ``AWS_PROFILE``, else ``default``). Any provider that needs the network
    (container or instance roles, when their packages are installed) is asked as a session would ask it.
    """
    transport = SonicTransport()
    try:
        try:
            sdk_config = await AsyncBedrockRuntimeConfig.resolve(profile=profile, region=region, transport=transport)
            context = sdk_config.resolution_context()
            assert context is not None  # resolve() always keeps its context
            files = await context.parsed_profiles()
        except ConfigError as error:  # a profile named that does not exist, or shared files that cannot be parsed
            return CredentialSource(None, _said(error), profile=profile or os.environ.get("AWS_PROFILE") or "default")
        active = context.profile_name
        # As AsyncBedrockRuntimeClient builds it on its first call: only a profile given in code (not AWS_PROFILE)
        # turns the environment's keys off.
        explicit = active if context.profile_source is ConfigSource.OVERRIDE else None
        chain = await IdentityChain.create(
            AWSCredentialsIdentity,
            config_file=files,
            profile_name=explicit,
            region_override=region,
            http_client=transport,
        )
        region_setting = files.get(active, "region")
        # The chain answers with the first identity and not who gave it; its resolvers, asked in its order, tell.
        # The test suite pins this attribute (the doctor names the environment's keys) against the SDK versions the
        # `sonic` extra allows.
        resolvers: tuple[Any, ...] = getattr(chain, "_resolvers", ())
        said: list[str] = []
        for resolver in resolvers:
            try:
                identity = await resolver.get_identity(properties={})
            except SmithyIdentityError as error:
                said.append(f"{resolver.provider_name}: {_said(error)}")
                continue
            expiration: datetime | None = identity.expiration
            return CredentialSource(
                resolver.provider_name,
                _where(resolver.provider_name, active),
                temporary=identity.session_token is not None,
                expires_at=expiration.timestamp() if expiration is not None else None,
                profile=active,
                profile_region=region_setting,
            )
        try:
            await chain.get_identity(properties={})
        except IdentityChainError as error:
            said += [str(source) for source in error.unclaimed_sources]
        else:  # resolvers we could not see one by one (a later SDK): the chain still found credentials
            return CredentialSource("IdentityChain", "the SDK's provider chain", profile=active)
        looked = f"environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, profile {active!r} in "
        looked += _shared_files()
        return CredentialSource(
            None,
            f"no credentials found (looked at {looked})",
            hints=(*said, *_profile_hints(files, active)),
            profile=active,
            profile_region=region_setting,
        )
    finally:
        await transport.close()
