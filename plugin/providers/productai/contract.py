"""What the ProductAI client and adapter assume about the real service, each with its source.

- [DOC]    ProductAI's API page (productai-api.md in the shared reference) states it;
- [DOC: vendor code] ProductAI's own client code (ShapeStudio/productai-mcp, productai-mcp-server) shows it
  (CONTRACTS.md §3, "the ProductAI vendor-code note");
- [ASSUME] nothing public states it: our choice, kept here so it is one line to change.

(The sandbox emulates the service from `sandbox/contract.py`; this module is the reading side.)
Nothing in this module does I/O.
"""

from __future__ import annotations

# --- Job statuses -------------------------------------------------------------------------------

# [DOC] RUNNING, COMPLETED, ERROR; [DOC: vendor code] NOT_STARTED, and FAILED / TIMEOUT, final like ERROR.
JOB_STATUSES = frozenset({"NOT_STARTED", "RUNNING", "COMPLETED", "ERROR", "FAILED", "TIMEOUT"})
FAILURE_STATUSES = frozenset({"ERROR", "FAILED", "TIMEOUT"})
TERMINAL_STATUSES = FAILURE_STATUSES | {"COMPLETED"}
# [DOC: vendor code] "treat an unknown status as not finished only until a deadline": any other word is read as
# running (logged once as unknown_status) until the job's max_job_age.

# --- Models and tokens --------------------------------------------------------------------------

# [DOC] the page's list and token costs.
MODEL_TOKENS = {
    "gpt-low": 2,
    "gpt-medium": 3,
    "gpt-high": 8,
    "kontext-pro": 3,
    "nanobanana": 3,
    "nanobananapro": 8,
    "seedream": 3,
}
# [DOC: vendor code] more models exist than the page lists (kontext-max, nanobanana2, gpt-1.5, gpt-2): the vendor
# adds them, so a model outside the list is accepted with a warning, not refused by the config.
# [ASSUME] such a model costs the dearest documented generation, so budgets err on the safe side.
UNLISTED_MODEL_TOKENS = max(MODEL_TOKENS.values())
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # [ASSUME] what a model name looks like
UPSCALE_TOKENS = 20  # [DOC] "Magnific Precision Upscale"

# --- Deadline -----------------------------------------------------------------------------------

# [ASSUME] a generation takes well under a minute (our measure of the page's examples: 20-40 s); a job
# still unfinished after an hour will not finish. Past it the job is polled once more, then failed
# with provider_timeout; its image is not sent again by itself (a new job is a paid attempt).
MAX_JOB_AGE_SECONDS = 3600.0


def model_tokens(model: str) -> int:
    return MODEL_TOKENS.get(model, UNLISTED_MODEL_TOKENS)


def is_listed_model(model: str) -> bool:
    return model in MODEL_TOKENS
