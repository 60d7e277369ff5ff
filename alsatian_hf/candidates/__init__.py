"""`alsatian_hf.candidates`: a repo becomes an engine candidate.

Open it (`repos`), read its blocks from a local or Hub block source (`sources`), pick its processor
(`processors`), probe its block sizes and FLOPs (`probe`) and build the `EngineCandidate` the engine runs
(`build`, `candidate`), whose blocks load in their prepared form (`prepared`).
"""

from .build import AssembledCandidate, CandidateAssembler, build_candidate
from .candidate import EngineBlock, EngineCandidate, computed_apart
from .prepared import wait_prepared
from .probe import ShapeProbe
from .processors import Modality_T, Processor, image_processor, processor_for, text_processor, timm_processor
from .repos import CandidateSpec, OpenedRepo, candidate_id, open_hub, open_local, open_repo
from .sources import HubBlockSource, LocalBlockSource, TensorSource, files_identity


__all__ = [
    "AssembledCandidate",
    "CandidateAssembler",
    "CandidateSpec",
    "EngineBlock",
    "EngineCandidate",
    "HubBlockSource",
    "LocalBlockSource",
    "Modality_T",
    "OpenedRepo",
    "Processor",
    "ShapeProbe",
    "TensorSource",
    "build_candidate",
    "wait_prepared",
    "candidate_id",
    "computed_apart",
    "files_identity",
    "image_processor",
    "open_hub",
    "open_local",
    "open_repo",
    "processor_for",
    "text_processor",
    "timm_processor",
]
