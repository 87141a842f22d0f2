"""Realistic TWIST job files, for the demo, the tests and the benchmarks."""

from __future__ import annotations

import json
import random
from typing import Any

# The seed's clients, weighted roughly as its daily report shows them.
CLIENT_MIX = {
    "RANK": 30,
    "LOREAL": 10,
    "BISSELL": 7,
    "RECKITTBENCKISER": 5,
    "OLIVER": 4,
    "CELTRA": 3,
    "CIBC": 3,
    "ADIDAS": 3,
    "PAYPAL": 2,
    "BAYER": 2,
    "3M": 2,
    "ACME": 2,
}
CATEGORIES = ["PRODUCTION", "CAMPAIGN", "ORDER", "SOCIAL", "DIGITAL", "CELTRA"]


def job(client: str, category: str, number: int, size: int = 0, title: str | None = None) -> bytes:
    """One job file as TWIST writes it, padded with realistic detail to about `size` bytes."""
    document: dict[str, Any] = {
        "JobSpecification": {
            "JobDetails": {
                "ClientCode": client,
                "JobCategory": category,
                "StudioCode": f"{client}_STUDIO",
                "Title": title or f"{client.title()} campaign {number}",
                "JobNumber": number,
                "Description": "Artwork adaptation for print and digital placements.",
            },
            "Deliverables": [],
        }
    }
    raw = json.dumps(document, indent=2).encode()
    deliverables: list[dict[str, Any]] = document["JobSpecification"]["Deliverables"]
    item = 0
    while len(raw) < size:
        deliverables.append(
            {"Item": item, "Format": "A4 portrait", "Channel": "print", "Copy": "Lorem ipsum dolor sit amet " * 2}
        )
        item += 1
        raw = json.dumps(document, indent=2).encode()
    return raw


def backlog(count: int, seed: int = 1, bad_every: int = 97):
    """Yield (client folder, file name, bytes, valid) for a realistic backlog with a few invalid files."""
    rng = random.Random(seed)
    clients, weights = list(CLIENT_MIX), list(CLIENT_MIX.values())
    for n in range(count):
        client = rng.choices(clients, weights)[0]
        category = "CELTRA" if rng.random() < 0.1 else rng.choice(CATEGORIES[:-1])
        name = f"{5_900_000 + n}.json"
        if bad_every and n % bad_every == bad_every - 1:
            yield client, name, b'{"JobSpecification": {"JobDetails": {"ClientCode": ', False
        else:
            yield client, name, job(client, category, n, rng.randint(2048, 8192)), True
