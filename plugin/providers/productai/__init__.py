"""ProductAI (generative product photos): so far its loopback sandbox, `productai.sandbox`; the client comes with the provider plugin boundary."""
