"""Imagen AI (photographer editing profiles): the client (`client`, reading `answers`), its errors, the
provider plugin (`plugin`, entry point `imagen`) and the assumptions they rest on (`contract`). The
loopback sandbox, `imagen.sandbox`, is not imported from here."""

from .client import ImagenClient, Profile, match_exports
from .errors import (
    AuthenticationFailed,
    ImagenError,
    InvalidRequest,
    LinkExpired,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    UnexpectedResponse,
)
from .plugin import PLUGIN, ImagenProvider, ImagenSettings

__all__ = [
    "PLUGIN",
    "AuthenticationFailed",
    "ImagenClient",
    "ImagenError",
    "ImagenProvider",
    "ImagenSettings",
    "InvalidRequest",
    "LinkExpired",
    "NotFound",
    "Profile",
    "RateLimited",
    "ServiceUnavailable",
    "UnexpectedResponse",
    "match_exports",
]
