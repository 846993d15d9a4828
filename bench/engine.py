"""Engine throughput on realistic 1-5 KB reports, single process and with a process pool.

Reports are built from the labelled corpus (eval/corpus/engine_*.jsonl): whole synthetic
reports joined until each reaches 1, 3 and 5 KB, so every size carries a realistic mix of
sections, negations, sizes, recommendations and communications. In the same run it times
the bare ``spacy.blank("en")`` tokenizer on the same texts: the baseline every figure is
also given as a ratio of (machine speed cancels out of the ratios).

    python bench/engine.py [--seconds 3] [--workers N] [--stages]

``--stages`` also prints, per size, the median time of each NLP component and of each
inference builder (where the time goes).

On a machine shared with other work, wall-clock medians move with the load; the CPU time
of the benchmarking thread (``cpu p50``) moves much less, so compare that between runs.

Target: median under 5 ms for a 3 KB report on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = (1024, 3072, 5120)
_ENGINE = None


def corpus_texts() -> list[str]:
    texts = []
    for path in sorted((ROOT / "eval" / "corpus").glob("engine_*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.append(json.loads(line)["text"])
    return texts


def reports(size: int, count: int = 40) -> list[str]:
    texts = corpus_texts()
    out = []
    index = 0
    for _ in range(count):
        parts: list[str] = []
        while sum(len(p) + 2 for p in parts) < size:
            parts.append(texts[index % len(texts)])
            index += 1
        out.append("\n\n".join(parts)[:size])
    return out


def request(text: str):
    from ri_engine.models import RadiologyInsightsData

    return RadiologyInsightsData.from_json({
        "patients": [{"id": "p", "encounters": [{"id": "e"}], "patientDocuments": [{
            "id": "d", "type": "note", "createdAt": "2024-01-15T00:00:00",
            "administrativeMetadata": {"orderedProcedures": [{
                "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2",
                                     "display": "CT CHEST"}]}, "description": "CT CHEST"}]},
            "content": {"sourceType": "inline", "value": text}}]}],
        "configuration": {"locale": "en-US", "includeEvidence": True}})


def timed(fn, items, seconds: float, cpu: list[float] | None = None) -> list[float]:
    """Wall-clock durations of ``fn`` over ``items``; CPU (thread) times go to ``cpu``."""
    durations: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(durations) < len(items):
        item = items[len(durations) % len(items)]
        start, start_cpu = time.perf_counter(), time.thread_time()
        fn(item)
        durations.append(time.perf_counter() - start)
        if cpu is not None:
            cpu.append(time.thread_time() - start_cpu)
    return durations


def _init_worker() -> None:
    global _ENGINE
    from ri_engine import Engine

    _ENGINE = Engine()


def _analyse(text: str) -> int:
    result = _ENGINE.analyze(request(text))  # type: ignore[union-attr]
    return len(result.patient_results[0].inferences)


def pool_rate(texts: list[str], workers: int, seconds: float) -> float:
    with ProcessPoolExecutor(workers, initializer=_init_worker) as pool:
        list(pool.map(_analyse, texts[:workers], chunksize=1))  # warm every worker
        done = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            done += sum(1 for _ in pool.map(_analyse, texts, chunksize=4))
        return done / (time.perf_counter() - start)


def stage_times(engine, requests, rounds: int = 3) -> dict[str, float]:
    """Median ms per pipeline component and per inference builder over ``requests``."""
    from ri_engine.inferences import BUILDERS, KIND_MODULES
    from ri_engine.validation import validate

    times: dict[str, list[float]] = {}

    def clock(name: str, fn, *args):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        result = fn(*args)
        times.setdefault(name, []).append(time.perf_counter() - start)
        return result

    nlp = engine.pipeline.nlp
    builders: dict[str, object] = {}  # module -> builder, once each (order discrepancies)
    for kind, module in KIND_MODULES.items():
        if kind in BUILDERS:
            builders.setdefault(module, BUILDERS[kind])
    for _ in range(rounds):
        for data in requests:
            text = validate(data).document.content.value
            doc = clock("tokenizer", nlp.make_doc, text)
            doc.user_data.update(text=text, document_date=None)
            for name, component in nlp.pipeline:
                doc = clock(name, component, doc)
            ctx = clock("context (all NLP)", engine.context, validate(data))
            for module, builder in builders.items():
                clock(module, builder, ctx)
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--stages", action="store_true", help="time each NLP component and builder")
    args = parser.parse_args()

    import spacy

    from ri_engine import Engine

    blank = spacy.blank("en")
    engine = Engine()
    print(f"{'size':>6} {'baseline ms':>12} {'engine ms p50':>14} {'p95':>7} "
          f"{'reports/s':>10} {'x baseline':>11} {'cpu p50':>8}")
    three_kb: list[str] = []
    for size in SIZES:
        texts = reports(size)
        if size == 3072:
            three_kb = texts
        requests = [request(t) for t in texts]
        for r in requests[:3]:
            engine.analyze(r)  # warm caches
        base = statistics.median(timed(blank, texts, args.seconds / 3))
        cpu: list[float] = []
        runs = timed(engine.analyze, requests, args.seconds, cpu)
        p50 = statistics.median(runs)
        p95 = sorted(runs)[int(len(runs) * 0.95)]
        print(f"{size:>6} {base * 1e3:>12.2f} {p50 * 1e3:>14.2f} {p95 * 1e3:>7.2f} "
              f"{1 / p50:>10.0f} {p50 / base:>10.1f}x {statistics.median(cpu) * 1e3:>8.2f}")
        if args.stages:
            stages = stage_times(engine, requests)
            print("       " + ", ".join(f"{name} {ms:.2f}" for name, ms in stages.items()
                                       if ms >= 0.005))
    single = 1 / statistics.median(timed(engine.analyze, [request(t) for t in three_kb], args.seconds))
    pooled = pool_rate(three_kb, args.workers, args.seconds)
    print(f"3 KB reports/s: single process {single:.0f}, pool of {args.workers} {pooled:.0f} "
          f"({pooled / single:.2f}x single)")


if __name__ == "__main__":
    main()
