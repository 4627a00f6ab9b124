"""ProductAI's public contract as the sandbox emulates it (CONTRACTS.md §3), in one place.

- [DOC]    ProductAI's API page (productai-api.md) or its own client code states it;
- [ASSUME] nothing public states it: our choice, kept here so that it is one line to change
           when the real service turns out to disagree.

Nothing in this module does I/O.
"""

from __future__ import annotations

# --- Endpoints [DOC] ----------------------------------------------------------------------------

BASE_URL = "https://api.productai.photo/v1"  # the sandbox's `base_url` stands in for this
API_PREFIX = "/v1"
GENERATE_PATH = f"{API_PREFIX}/api/generate"  # POST
UPSCALE_PATH = f"{API_PREFIX}/api/upscale"  # POST
JOB_PATH = f"{API_PREFIX}/api/job/{{job_id}}"  # GET
API_KEY_HEADER = "x-api-key"  # the only way a key is accepted; Bearer belongs to another API
# The three endpoints share one request budget; these names key stats and faults.
ENDPOINTS = ("generate", "upscale", "job")

# --- Models and tokens [DOC] --------------------------------------------------------------------

MODEL_TOKENS = {
    "gpt-low": 2,
    "gpt-medium": 3,
    "gpt-high": 8,
    "kontext-pro": 3,
    "nanobanana": 3,
    "nanobananapro": 8,
    "seedream": 3,
}
MULTI_REFERENCE_MODELS = frozenset({"seedream", "nanobanana", "nanobananapro"})  # image_url may be [a, b]
MAX_REFERENCE_IMAGES = 2
UPSCALE_TOKENS = 20  # "Magnific Precision Upscale"
# [DOC] tokens are deducted when a job starts; the generate answer already says RUNNING, so the
# sandbox deducts at the accepted request.
# [ASSUME] a job that ends in ERROR keeps its tokens (nothing documents a refund).
REFUND_ON_ERROR = False
# [ASSUME] a model outside MULTI_REFERENCE_MODELS takes one image: a string, or a 1-item array.
# [ASSUME] prompt: a non-blank string of at most this many characters (the cap is ours).
MAX_PROMPT_CHARS = 4000
# [ASSUME] unknown body fields are ignored, like most JSON APIs (nothing documents either way).

# --- Source images [DOC] ------------------------------------------------------------------------

MAX_SOURCE_BYTES = 10 * 1024 * 1024  # "below 10MB"
SOURCE_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})  # Pillow's names for PNG, JPG, WebP
# [ASSUME] how sources are fetched: redirects followed up to this many, this timeout; the
# format is sniffed from the bytes (Content-Type is not checked). Loopback is allowed here so
# tests can host images; the real service needs a public URL.
MAX_SOURCE_REDIRECTS = 5
SOURCE_TIMEOUT_SECONDS = 10.0

# --- Job statuses -------------------------------------------------------------------------------

NOT_STARTED = "NOT_STARTED"  # [DOC, vendor code] may be seen before RUNNING
RUNNING = "RUNNING"  # [DOC] also the status in every generate/upscale answer
COMPLETED = "COMPLETED"  # [DOC] with data.image_url
ERROR = "ERROR"  # [DOC] data is {"id", "status"} only: the reason is not published
# [DOC: vendor code, ShapeStudio/productai-mcp] FAILED and TIMEOUT also end a job, like ERROR. The
# `production` profile answers FAILED for a job whose work failed, and TIMEOUT for one that ran past
# `production_timeout_seconds` (the vendor's word for a job the service gave up on).
FAILED = "FAILED"
TIMEOUT = "TIMEOUT"
FAILURE_STATUSES = frozenset({ERROR, FAILED, TIMEOUT})
TERMINAL_STATUSES = frozenset({COMPLETED, ERROR, FAILED, TIMEOUT})
PROFILES = ("default", "production")  # default: ERROR for every failure, as the API page shows
# [ASSUME] a job another key created, or an unknown id, is 404; a non-integer id is 400.

# --- Rate limit [DOC] ---------------------------------------------------------------------------

REQUESTS_PER_WINDOW = 15  # "15 requests per minute", generate + upscale + status polls together
WINDOW_SECONDS = 60.0
# [DOC in CONTRACTS.md] counted per client IP (on loopback every client shares 127.0.0.1);
# the sandbox can also count per key ("key").
RATE_LIMIT_SCOPE = "ip"
# [ASSUME] a SLIDING window (the strictest reading: a client that respects it respects any
# fixed window too); every answered request counts, whatever its status, except the 429s
# themselves, so a client backing off regains its budget.
# [ASSUME] 429 carries no Retry-After or X-RateLimit-* headers: none are documented, so a client
# must back off on its own.

# --- Error bodies -------------------------------------------------------------------------------

# [DOC] OUT_OF_TOKENS is seen in two shapes; a client must find "OUT_OF_TOKENS" anywhere in the body.
OUT_OF_TOKENS = "OUT_OF_TOKENS"
OUT_OF_TOKENS_API_ERROR = "api_error"  # {"name":"ApiError","message":"OUT_OF_TOKENS","details":"Not enough credits"}
OUT_OF_TOKENS_CODE = "code"  # HTTP 402 {"code":"OUT_OF_TOKENS","message":"Not enough credits"}
OUT_OF_TOKENS_SHAPES = (OUT_OF_TOKENS_API_ERROR, OUT_OF_TOKENS_CODE)
OUT_OF_TOKENS_ALTERNATE = "alternate"  # the sandbox's default: one shape, then the other
OUT_OF_TOKENS_CODE_STATUS = 402  # [DOC, the other source]
OUT_OF_TOKENS_API_ERROR_STATUS = 400  # [ASSUME] the documented body comes with no status
# [DOC] statuses: 400 bad parameters, 401 invalid key, 500 server error.
# [ASSUME] their bodies use the documented ApiError shape with these messages:
BAD_REQUEST = "BAD_REQUEST"
UNAUTHORIZED = "UNAUTHORIZED"
NOT_FOUND = "NOT_FOUND"
RATE_LIMITED = "TOO_MANY_REQUESTS"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"

# --- Results [ASSUME] ---------------------------------------------------------------------------

RESULT_PATH = "/results/{name}"  # public, like a CDN link; `{job id}.png`
RESULT_CONTENT_TYPE = "image/png"
UPSCALE_FACTOR = 2
MAX_UPSCALED_SIDE = 8192

# --- Webhook ------------------------------------------------------------------------------------

# [DOC] one URL per account, set on the dashboard, never per request; unsigned (the receiver
# protects itself with a secret token in the URL path); must answer 200.
WEBHOOK_SUCCESS = "success"  # {"status":"success","image_url","job_id":"<id as a string>"}
WEBHOOK_ERROR = "error"  # {"status":"error"} — exactly as documented: no job id
# [ASSUME] sent for upscale jobs as well as generate jobs ("when jobs complete").
# [ASSUME] only HTTP 200 counts as delivered; other answers and network errors are retried
# after these delays (seconds), then given up. Best-effort: the job endpoint stays the truth.
WEBHOOK_RETRY_DELAYS = (1.0, 5.0, 15.0)
WEBHOOK_TIMEOUT_SECONDS = 10.0
