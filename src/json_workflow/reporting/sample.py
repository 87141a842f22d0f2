"""A realistic day's figures, shaped like the seed's report, for the report's tests and screenshots."""

from __future__ import annotations

import datetime

from json_workflow.reporting.figures import ClientFigures, DayFigures, Problem

_HOURS = {7: 4, 8: 18, 9: 45, 10: 35, 11: 25, 12: 15, 13: 20, 14: 40, 15: 52, 16: 10, 17: 5}


def sample_figures() -> DayFigures:
    """247 files from five clients, two errors, every file accounted for."""
    return DayFigures(
        day=datetime.date(2026, 11, 28),
        timezone="Europe/London",
        generated="2026-11-29 00:00 GMT",
        uptime="1 day, 5 hours",
        current=True,
        processed=247,
        archived=245,
        errors=2,
        success_rate=100 * 245 / 247,
        batches=25,
        average_seconds=0.1534,
        average_batch=9.88,
        scans_completed=145,
        scans_skipped=3,
        scans_abandoned=0,
        scans_slow=0,
        sources={"PERIODIC": 12, "REALTIME": 229, "STARTUP": 6},
        highlight="Celtra",
        clients=[
            ClientFigures("RANK", 150, 150, 25, 0, [("PRODUCTION", 125), ("CELTRA", 25)]),
            ClientFigures("LOREAL", 45, 45, 0, 0, [("CAMPAIGN", 45)]),
            ClientFigures("BISSELL", 30, 30, 0, 0, [("ORDER", 30)]),
            ClientFigures("RECKITTBENCKISER", 12, 11, 2, 1, [("SOCIAL", 10), ("CELTRA", 2)]),
            ClientFigures("OLIVER", 10, 9, 5, 1, [("CELTRA", 5), ("DIGITAL", 5)]),
        ],
        destinations=[
            ("/data/PRODUCTION/SYNC/MAKE/Monday Rank", 150),
            ("/data/PRODUCTION/CLIENT-STORES/LOREAL/IN", 45),
            ("/data/PRODUCTION/SYNC/MAKE/Celtra - Create_Rename - Project_Design File", 32),
            ("/data/PRODUCTION/CLIENT-STORES/BISSELL-WRIKE/IN", 30),
            ("/data/PRODUCTION/SYNC/MAKE/Monday RB", 11),
        ],
        hours=[(f"{hour:02d}:00", _HOURS.get(hour, 0)) for hour in range(24)],
        last_errors=[
            Problem(
                "15:33:22",
                "OLIVER",
                "OLIVER/OLV-2291_summer_social_toolkit_final_v3.json",
                "parse: Missing ClientCode field",
            ),
            Problem(
                "12:45:18",
                "RECKITTBENCKISER",
                "RECKITTBENCKISER/RB-10443.json",
                "parse: Invalid JSON structure (line 14, column 3)",
            ),
        ],
        received=248,
        received_archived=245,
        received_failed=2,
        pending=1,
        unaccounted=[],
    )
