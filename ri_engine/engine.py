"""The engine: one RI request in, RI inferences out.

    engine = Engine()                      # loads the pipeline and knowledge once
    result = engine.analyze(data)          # RadiologyInsightsData -> InferenceResult

``analyze`` raises ``RequestError`` for a request RI would reject (see ``validation.py``) and
``AnalysisFailure`` when a builder fails on a valid request. The same call serves the CLI,
the gateway workers and the REST API. An ``Engine`` is not shared between threads while
analysing; give each worker its own (they are cheap after the first, about 0.3 s to load).
"""

from __future__ import annotations

import gc

from .context import AnalysisContext
from .errors import AnalysisFailure, EngineError
from .inferences import BUILDERS, KIND_MODULES
from .models import Inference, InferenceResult, PatientResult, RadiologyInsightsData
from .nlp import Pipeline
from .nlp.dates import parse_document_date
from .validation import ValidRequest, validate

MODEL_VERSION = "ri-gateway-0.1"


class Engine:
    def __init__(self, *, section_scheme: str | None = None,
                 model_version: str = MODEL_VERSION) -> None:
        self.pipeline = Pipeline(section_scheme)
        self.model_version = model_version
        _freeze_loaded_state()
        _raise_young_threshold()

    @property
    def kinds(self) -> tuple[str, ...]:
        """The inference kinds this installation can produce."""
        return tuple(k for k in KIND_MODULES if k in BUILDERS)

    def analyze(self, data: RadiologyInsightsData) -> InferenceResult:
        request = validate(data)
        try:
            ctx = self.context(request)
            inferences: list[Inference] = []
            done: set[int] = set()
            for kind in KIND_MODULES:
                builder = BUILDERS.get(kind)
                if builder is None or kind not in request.kinds or id(builder) in done:
                    continue
                # One module may serve several kinds (order discrepancies): run it once
                # and keep what was asked for.
                done.add(id(builder))
                inferences.extend(i for i in builder(ctx) if i.kind in request.kinds)
        except EngineError:
            raise
        except Exception as exc:  # a builder bug must surface as an RI internal error
            raise AnalysisFailure(f"analysis failed: {type(exc).__name__}",
                                  code="InternalError") from exc
        return InferenceResult(
            patient_results=[PatientResult(patient_id=request.patient.id, inferences=inferences)],
            model_version=self.model_version)

    def context(self, request: ValidRequest) -> AnalysisContext:
        """Run the NLP pipeline and gather everything builders read."""
        document = request.document
        text = document.content.value
        document_date = parse_document_date(document.created_at)
        period = request.encounter.period if request.encounter else None
        reference_date = parse_document_date(period.start if period else None) or document_date
        metadata = document.administrative_metadata
        ordered = list((metadata.ordered_procedures if metadata else None) or [])
        doc = self.pipeline.analyse(text, document_date)
        ext = doc._  # one accessor for the ten layers
        order_procedures = []
        for order in ordered:
            description = order.description or ""
            display = next((c.display for c in (order.code.coding or []) if c.display), "") \
                if order.code else ""
            order_procedures.extend(self.pipeline.procedures_in(description or display))
        return AnalysisContext(
            text=text, patient=request.patient, document=document,
            configuration=request.configuration, document_date=document_date,
            reference_date=reference_date, ordered_procedures=ordered,
            sections=list(ext.ri_sections), sentences=list(ext.ri_sentences),
            terms=ext.ri_terms, measurements=list(ext.ri_measurements),
            dates=list(ext.ri_dates), times=list(ext.ri_times),
            anatomy=list(ext.ri_anatomy), findings=list(ext.ri_findings),
            procedures=list(ext.ri_procedures), order_procedures=order_procedures,
            doc=doc, lexicon=self.pipeline.lexicon)


def _freeze_loaded_state() -> None:
    """Take everything loaded so far out of the cyclic garbage collector's rounds.

    The pipeline and its knowledge (about 90,000 tracked objects: lexicons, matchers,
    compiled rules, spaCy's registry) live as long as the process. Each analysis allocates
    thousands of short-lived objects, so a full collection runs every dozen reports or so
    and would walk all of that loaded state each time: 20-40 ms, the whole p95 of a 5 KB
    report. Garbage is collected first so that nothing unreachable is kept for good.
    """
    gc.collect()
    gc.freeze()


# Container objects an analysis may allocate before the collector's young generation runs.
YOUNG_THRESHOLD = 10_000


def _raise_young_threshold() -> None:
    """Let one report's short-lived objects come and go between young collections.

    An analysis allocates a few thousand container objects (matches, mentions, model
    values) and reference counting frees nearly all of them; the collector finds almost
    no cycles among them (with this threshold a 3 KB benchmark runs hundreds of reports
    without one collection). With Python's default of 700, two or three collections run
    per 3 KB report anyway, each walking every live young object: about 0.2 ms a report.
    A threshold already set higher by the application is kept.
    """
    young, middle, old = gc.get_threshold()
    if 0 < young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)
