"""Every custom ``Doc`` attribute the pipeline sets, declared in one place.

Components write these; ``AnalysisContext`` copies them into typed fields so builders never
touch spaCy. Registering twice with a different default fails loudly instead of silently
sharing state with another library's extension of the same name.
"""

from __future__ import annotations

from spacy.tokens import Doc

DOC_EXTENSIONS: dict[str, object] = {
    "ri_sections": None,      # list[context.Section]
    "ri_sentences": None,     # list[context.Span] (trimmed, headers left out)
    "ri_terms": None,         # dict[group, list[Term]] from the lexicon matcher
    "ri_measurements": None,  # list[Measurement]
    "ri_dates": None,         # list[DateMention]
    "ri_times": None,         # list[TimeMention]
    "ri_anatomy": None,       # list[AnatomyMention]
    "ri_findings": None,      # list[FindingMention]
    "ri_procedures": None,    # list[ProcedureMention]
}


def register_extensions() -> None:
    for name, default in DOC_EXTENSIONS.items():
        if Doc.has_extension(name):
            existing = Doc.get_extension(name)
            if existing is None or existing[0] is not default:
                raise RuntimeError(f"Doc extension {name!r} is already registered differently")
            continue
        Doc.set_extension(name, default=default)
