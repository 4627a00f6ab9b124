"""Imagen AI (photographer editing profiles): so far its loopback sandbox, `imagen.sandbox`; the client comes with the provider plugin boundary."""
