"""What a run did, per stage and per instruction: printed as a summary and written as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class InstructionCounts:
    embedded: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass
class RunReport:
    run_id: str
    input: str
    input_version: int | None
    output: str
    output_format: str
    output_version: int | None = None
    model: str = ""
    fingerprint: str = ""
    rows_read: int = 0
    rows_embedded: int = 0
    rows_failed: int = 0
    rows_deleted: int = 0
    waves: int = 0
    waves_appended: int = 0  # of `waves`: committed by adding their files (new keys), not by MERGE
    wave_commit_seconds: list[float] = field(default_factory=list)  # per wave, in order: does a commit grow?
    replicas_started: bool = False
    instructions: dict[str, InstructionCounts] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=lambda: {"start_up": 0.0, "read": 0.0, "embed": 0.0,
                                                               "commit": 0.0, "total": 0.0})
    rows_per_second: float = 0.0
    padding_share: float = 0.0
    error_rate: float = 0.0
    status: str = "running"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def summary(self) -> str:
        per = ", ".join(f"{n}: {c.embedded} embedded / {c.skipped} skipped / {c.failed} failed"
                        for n, c in self.instructions.items())
        s = self.seconds
        return (f"inbedder run {self.run_id}: {self.status}\n"
                f"  {self.rows_read} rows read from {self.input} (version {self.input_version}); "
                f"{self.rows_embedded} embedded, {self.rows_failed} with errors, {self.rows_deleted} removed\n"
                f"  {per}\n"
                f"  {self.rows_per_second:.1f} rows/s while embedding; padding {self.padding_share:.1%}; "
                f"time: start-up {s['start_up']:.1f}s, read {s['read']:.1f}s, embed {s['embed']:.1f}s, "
                f"commit {s['commit']:.1f}s, total {s['total']:.1f}s\n"
                f"  {self.waves} wave(s), {self.waves_appended} appended; "
                f"output {self.output} ({self.output_format}) version {self.output_version}; "
                f"model {self.model} ({self.fingerprint})")
