"""The emulator's knobs: timing of the conversation model, the service limits, and SigV4 checking."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from novabridge.emulator import service


@dataclass(frozen=True)
class EmulatorOptions:
    """Defaults follow the service; tests shrink the times."""

    think_s: float = 0.3
    """Time from the end of the user's turn (or the tool result) to the first assistant audio."""
    output_speed: float = 2.0
    """Assistant audio is sent at this multiple of real time (the service sends faster than playback)."""
    output_chunk_s: float = 0.08
    """Duration of the audio in one ``audioOutput`` event."""
    endpointing_s: float | None = None
    """Overrides the pause that ends a user turn (otherwise HIGH/MEDIUM/LOW 1.5/1.75/2.0 s; MEDIUM by default)."""
    vad_threshold_dbfs: float = -40.0
    """Frame level above which input audio counts as speech."""
    input_event_s: float = 0.0
    """How long the server takes to read each input event: a loaded service, which a client's opening events (a long
    history) wait on through HTTP/2 flow control. 0 reads them at once."""
    session_limit_s: float = service.CONNECTION_LIFETIME_S
    """Connection lifetime; at its end the stream fails with modelTimeoutException."""
    input_timeout_s: float = service.INPUT_TIMEOUT_S
    """With no input event for this long the stream fails with "Timed out waiting for input events"."""
    silence_limit_s: float = service.SILENCE_LIMIT_S
    """With no user speech for this long while audio streams, the stream fails with InternalErrorCode=531."""
    max_streams: int = 64
    """Concurrent streams; one more is throttled at connect."""
    credentials: tuple[str, str] | None = None
    """(access key id, secret key): when set, requests must carry a SigV4 signature made with them (else 403)."""
    credentials_expire_at: float | None = None
    """When ``credentials`` stop working (``time.time()``), as temporary credentials do: a request signed with them
    afterwards is refused with 403 ExpiredTokenException "The security token included in the request is expired"."""
    credentials_file: Path | None = None
    """Temporary credentials issued to the account, read anew for each request: a JSON list of the documents a
    ``credential_process`` prints (`novabridge.emulator.sigv4.read_issued_keys`). A request must be signed with one
    of them (or with ``credentials``), send its session token, and come before its expiry, else 403 as the service
    answers (UnrecognizedClientException, ExpiredTokenException). Rewriting the file rotates the credentials."""
    region: str | None = None
    """The region this endpoint serves: a request signed for another is refused with 403 InvalidSignatureException
    "Credential should be scoped to a valid region, not '...'.", as a regional endpoint refuses it. None: any."""
    models: frozenset[str] = service.MODEL_IDS
    """The models offered here: a request for another is refused with 400 ValidationException "The provided model
    identifier is invalid.", the service's answer for a model its region does not offer."""
    extra_models: Mapping[str, service.Generation] = field(default_factory=dict)
    """Model ids this release does not know, each served with the rules of a named generation (``nova-sonic``,
    ``nova-2-sonic``) and its newest model's voices: a new model tried before the emulator learns of it."""
    denied_models: frozenset[str] = frozenset()
    """Models this account was not granted: refused with 403 AccessDeniedException "You don't have access to the
    model with the specified model ID."."""

    def __post_init__(self) -> None:
        positive = {
            "output_speed": self.output_speed,
            "output_chunk_s": self.output_chunk_s,
            "session_limit_s": self.session_limit_s,
            "input_timeout_s": self.input_timeout_s,
            "silence_limit_s": self.silence_limit_s,
            "max_streams": self.max_streams,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.think_s < 0 or (self.endpointing_s is not None and not self.endpointing_s > 0):
            raise ValueError("think_s must be >= 0 and endpointing_s positive")
        if self.credentials_expire_at is not None and self.credentials is None:
            raise ValueError("credentials_expire_at needs credentials to expire")
        object.__setattr__(self, "models", frozenset(self.models))
        object.__setattr__(self, "denied_models", frozenset(self.denied_models))
        # A plain dict, checked: a name that is no generation fails here, not on the first request.
        object.__setattr__(
            self, "extra_models", {model: service.Generation(rules) for model, rules in self.extra_models.items()}
        )

    def generation(self, model_id: str) -> service.Generation | None:
        """The rules ``model_id`` is served with here; None if it is not a model (an invalid model identifier)."""
        return service.GENERATIONS.get(model_id) or self.extra_models.get(model_id)

    def offers(self, model_id: str) -> bool:
        """``model_id`` is served here (``models``, or one of ``extra_models``)."""
        return model_id in self.extra_models or (model_id in service.MODEL_IDS and model_id in self.models)
