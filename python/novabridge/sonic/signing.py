"""What each new stream signs with: credentials resolved anew through the SDK's provider chain, fixed for its life.

Temporary credentials (an assumed role, SSO, an instance or container role, a ``credential_process``) expire, and a
conversation can outlive them. The SDK builds its provider chain once per client, and its resolvers keep what they
found: the profile's keys as the shared files held them at the first call, a credential process's output until the
moment it expires. A session's client lives as long as the conversation, so `FreshCredentials` builds the chain
again for every stream: the shared files are read again, the credential process runs again, a container or instance
role is asked again.

The SDK asks its resolver for credentials again for every event it signs, and the service checks each event's
signature against the stream's: credentials that changed in the middle of a stream would break it. So a stream gets
its credentials once, at its opening, and `signing_with` pins them for all its events (a plugin of the call, the
SDK's own way to change the configuration of one operation).

Sources rotate ahead of the expiry (EC2 makes an instance role's new credentials available at least five minutes
before the old ones expire), so a session that renews its stream a few minutes ahead of the expiry
(`SonicConfig.credentials_refresh_s`) moves onto fresh credentials before the old ones run out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from smithy_aws_core.identity import AWSCredentialsIdentity, StaticCredentialsResolver
from smithy_aws_core.identity.chain import IdentityChain
from smithy_http.aio.interfaces import HTTPClient

from novabridge.sonic.errors import CredentialsExpired


class FreshCredentials:
    """The credentials for each new stream of a session that gives no keys, from the SDK's sources as they are now."""

    def __init__(self, *, profile: str | None, region: str, http_client: HTTPClient) -> None:
        """``profile`` is `SonicConfig.profile`: as in the SDK, a profile named in code turns the environment off."""
        self._profile = profile
        self._region = region
        self._http_client = http_client
        self._ahead: AWSCredentialsIdentity | None = None
        """Resolved by `resolve` for the next stream."""

    async def resolve(self) -> AWSCredentialsIdentity:
        """The credentials the SDK's chain finds now; the next stream signs with these.

        Raises:
            SmithyIdentityError: no source gives credentials (`IdentityChainError` names what was looked at).
        """
        chain = await IdentityChain.create(
            AWSCredentialsIdentity,
            profile_name=self._profile,
            region_override=self._region,
            http_client=self._http_client,
        )
        self._ahead = await chain.get_identity(properties={})
        return self._ahead

    async def for_stream(self) -> AWSCredentialsIdentity:
        """The credentials for a stream about to open: those resolved ahead if still valid, else resolved now.

        Raises:
            SmithyIdentityError: no source gives credentials.
            CredentialsExpired: the source gives credentials past their expiry.
        """
        identity, self._ahead = self._ahead, None
        if identity is None or identity.is_expired:
            identity = await self.resolve()
            self._ahead = None
        if identity.is_expired:  # a source that hands out what it has, fresh or not: the SDK would not sign with it
            raise CredentialsExpired(identity.expiration.timestamp() if identity.expiration else time.time())
        return identity


def signing_with(identity: AWSCredentialsIdentity) -> Callable[[Any], None]:
    """A plugin for one call of the SDK: the request and every event of its stream are signed with ``identity``."""

    def plugin(config: Any) -> None:
        config.aws_credentials_identity_resolver = StaticCredentialsResolver(identity)

    return plugin


def expires_at(identity: AWSCredentialsIdentity) -> float | None:
    """When ``identity`` expires (``time.time()``); None: it does not say."""
    return identity.expiration.timestamp() if identity.expiration is not None else None
