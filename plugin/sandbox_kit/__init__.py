"""The kit every sandbox shares (the three providers' and Shopify's): one fault language and one
webhook poster. Only sandboxes import it: the daemon's code paths never do (an import contract in
pyproject.toml checks that, with `make lint`)."""

from .faults import Fault, FaultBook, SandboxFaults, answer_for, answer_modes, webhook_plan
from .webhooks import WebhookPoster

__all__ = ["Fault", "FaultBook", "SandboxFaults", "WebhookPoster", "answer_for", "answer_modes", "webhook_plan"]
