"""What `sglang serve` does with its words before SGLang's server parser sees them, by release.

Read from the released packages (``sglang/cli/serve.py`` and ``cli/utils.py``):

- From 0.5.10 it takes ``--model-type X`` / ``--model-type=X`` (the serving backend: auto, llm,
  diffusion) out of the words; the server parser never sees it, so it is not in the option
  table and must not be reported as unknown.
- It looks for the model (to choose the backend) before parsing, by exact spelling only:
  ``--model-path X`` or ``--model-path=X``; from 0.5.11 also ``--model``; from 0.5.16 also a
  first word that is not an option. No abbreviation counts.

`python3 -m sglang.launch_server` hands every word to the server parser.
"""

from __future__ import annotations

from .known_options import MODEL_PATH
from .versions import at_least

MODEL_TYPE = "--model-type"
MODEL_TYPE_FROM = "0.5.10"
MODEL_ALIAS_FROM = "0.5.11"


def is_serve(command: list[str]) -> bool:
    return command[-1:] == ["serve"]


def server_words(
    command: list[str], version: str, tokens: list[str], sources: list[str]
) -> tuple[list[str], list[str]]:
    """The words (and their sources) that reach SGLang's server parser."""
    if not (is_serve(command) and at_least(version, MODEL_TYPE_FROM)):
        return tokens, sources
    kept: list[str] = []
    kept_sources: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] == MODEL_TYPE:
            i += 2
            continue
        if tokens[i].startswith(MODEL_TYPE + "="):
            i += 1
            continue
        kept.append(tokens[i])
        kept_sources.append(sources[i])
        i += 1
    return kept, kept_sources


def model_spellings(version: str) -> tuple[str, ...]:
    """The spellings under which `sglang serve` of ``version`` finds the model."""
    if at_least(version, MODEL_ALIAS_FROM):
        return MODEL_PATH.spellings
    return (MODEL_PATH.canonical,)
