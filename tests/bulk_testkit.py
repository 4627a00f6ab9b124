"""A Shopify whose bulk operations are scripted and whose everything else is the real sandbox.

`BulkShop` is an httpx MockTransport handler: BulkProductsRun, BulkOperation, BulkOperationCancel
and the download of results are answered here, shaped like the captured answers
(captures/2026-04/bulk-operations); every other request is forwarded over loopback HTTP to the
Shopify sandbox. The JSONL is built from the sandbox's own ProductsPage answer, one line per
object, media lines with `__parentId`, shuffled (children often before their parent).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import httpx

from retouch.plugin.shopify.operations import operation
from shopify_testkit import bulk_node, check_against_schema, cost

RESULTS = "https://storage.googleapis.com/bulk-operation-outputs/"


@dataclass
class BulkShop:
    sandbox: Any
    endings: list[dict[str, Any]] = field(default_factory=list)  # per started op: {"status", "partial", "error_code"}
    in_progress: int = 0  # OPERATION_IN_PROGRESS answers before a start is accepted
    running_polls: int = 1  # polls that answer RUNNING before the ending
    never_ends: bool = False
    cut_downloads: int = 0  # downloads that stop half-way
    expired_ids: set[str] = field(default_factory=set)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    seed: int = 3

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "storage.googleapis.com":
            return self._download(request)
        body = json.loads(request.content)
        name = body.get("operationName")
        self.calls.append(name)
        if name in ("BulkProductsRun", "BulkOperation", "BulkOperationCancel"):
            check_against_schema(body)
            return httpx.Response(
                200,
                json={"data": getattr(self, f"_{name}")(body["variables"]), "extensions": {"cost": cost(requested=10)}},
            )
        forwarded = httpx.post(
            self.sandbox.shop_url + request.url.path,
            content=request.content,
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            timeout=10,
        )
        return httpx.Response(forwarded.status_code, content=forwarded.content, headers=forwarded.headers)

    # ----- operations
    def _BulkProductsRun(self, variables: dict) -> dict:
        if self.in_progress:
            self.in_progress -= 1
            return {
                "bulkOperationRunQuery": {
                    "bulkOperation": None,
                    "userErrors": [
                        {
                            "field": None,
                            "code": "OPERATION_IN_PROGRESS",
                            "message": "A bulk query operation for this app and shop is already in progress: "
                            "gid://shopify/BulkOperation/1, gid://shopify/BulkOperation/2.",
                        }
                    ],
                }
            }
        number = 8001977286962 + len(self.operations)
        node = bulk_node(number)
        self.operations[node["id"]] = {
            "node": node,
            "polls": 0,
            "ending": self.endings.pop(0) if self.endings else {"status": "COMPLETED"},
        }
        return {"bulkOperationRunQuery": {"bulkOperation": node, "userErrors": []}}

    def _BulkOperation(self, variables: dict) -> dict:
        state = self.operations.get(variables["id"])
        if variables["id"] in self.expired_ids:
            return {"bulkOperation": bulk_node(int(variables["id"].rsplit("/", 1)[1]), "EXPIRED")}
        if state is None:
            return {"bulkOperation": None}
        state["polls"] += 1
        node = state["node"]
        if node["status"] in ("CREATED", "RUNNING") and (self.never_ends or state["polls"] <= self.running_polls):
            node = state["node"] = {**node, "status": "RUNNING"}
        elif node["status"] in ("CREATED", "RUNNING"):
            node = state["node"] = self._ended(node, state["ending"])
        return {"bulkOperation": node}

    def _BulkOperationCancel(self, variables: dict) -> dict:
        state = self.operations[variables["id"]]
        state["node"] = {**state["node"], "status": "CANCELING"}
        return {"bulkOperationCancel": {"bulkOperation": state["node"], "userErrors": []}}

    def _ended(self, node: dict, ending: dict) -> dict:
        content = self.jsonl()
        number = node["id"].rsplit("/", 1)[1]
        if ending.get("partial"):
            content = b"".join(content.splitlines(keepends=True)[: len(content.splitlines()) // 2])
        self.sandbox.bulk_results = getattr(self.sandbox, "bulk_results", {})
        self.sandbox.bulk_results[number] = content
        url = f"{RESULTS}{number}.jsonl?Expires=1783637048&Signature=x"
        status = ending["status"]
        return bulk_node(
            int(number),
            status,
            url=url if status == "COMPLETED" else None,
            partial=url if ending.get("partial") else None,
            error_code=ending.get("error_code"),
            objects=content.count(b"\n"),
        )

    def _download(self, request: httpx.Request) -> httpx.Response:
        self.calls.append("download")
        content = self.sandbox.bulk_results[request.url.path.rsplit("/", 1)[1].removesuffix(".jsonl")]
        if self.cut_downloads:
            self.cut_downloads -= 1
            content = content[: len(content) // 2]
        return httpx.Response(200, content=content, headers={"Content-Type": "application/jsonl"})

    def jsonl(self) -> bytes:
        """Every product and media of the sandbox as bulk lines, shuffled (order kept per parent)."""
        variables = {"first": 16, "after": None, "query": None, "mediaFirst": 10}  # (under the cost cap)
        answer = httpx.post(
            self.sandbox.shop_url + "/admin/api/2026-07/graphql.json",
            json={"query": operation("ProductsPage"), "variables": variables},
            headers={"X-Shopify-Access-Token": self.sandbox._access_token},
            timeout=10,
        ).json()
        parents, children = [], []
        for product in answer["data"]["products"]["nodes"]:
            media = product.pop("media")["nodes"]
            collections = product.pop("collections")["nodes"]  # nested lines too, as Shopify writes them
            parents.append(product)
            children.append([{**m, "__parentId": product["id"]} for m in [*media, *collections]])
        # Shuffle the products, then interleave: each product's media keep their order (Shopify
        # writes a connection in order) but may come before or after their product line.
        rng = random.Random(self.seed)
        order = list(range(len(parents)))
        rng.shuffle(order)
        out: list[dict] = []
        for index in order:
            items = [*children[index]]
            items.insert(rng.randint(0, len(items)), parents[index])
            out.extend(items)
        return b"".join(json.dumps(o).encode() + b"\n" for o in out)
