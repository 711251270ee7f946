"""The command-line flags of adaptive sampling, the consensus shortcut and hedging, declared
once for every command that takes them (``ask``, ``eval``, ``distill``), and how they map onto
the fields of :class:`~polyfuse.FusionOptions`.

:func:`takes_fusion_flags` adds the flags to a typer command and hands it their values as one
:class:`FusionFlags`. The flags add nothing of their own: :meth:`FusionFlags.overrides` turns
them into ``FusionOptions`` field values (``{"adaptive": {"confidence": 0.9}}``,
``{"hedge": {"after": 2.0}}``, ...) that :meth:`~polyfuse.FusionOptions.overridden` merges onto
a preset, so the models that validate a presets file validate the flags too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Annotated, Any, TypeVar

import typer

__all__ = [
    "AdaptiveAgreementFlag",
    "AdaptiveConfidenceFlag",
    "AdaptiveFirstFlag",
    "AdaptiveFlag",
    "AdaptiveMaxRoundsFlag",
    "AdaptiveStepFlag",
    "AnswerExtractFlag",
    "ConsensusFlag",
    "FusionFlags",
    "HedgeAfterFlag",
    "HedgeBudgetFlag",
    "HedgeFallbackFlag",
    "HedgePercentileFlag",
    "takes_fusion_flags",
]

_ADAPTIVE = "Adaptive sampling"
_HEDGE = "Hedged calls"

AdaptiveFlag = Annotated[
    bool,
    typer.Option(
        "--adaptive",
        metavar="",
        help="Sample in rounds and stop once the answers are settled (up to n; see "
        "docs/adaptive.md). Any --adaptive-* flag turns it on too.",
        rich_help_panel=_ADAPTIVE,
    ),
]
AdaptiveFirstFlag = Annotated[
    int | None,
    typer.Option(
        help="Samples in the first round (adaptive.first).",
        show_default=False,
        rich_help_panel=_ADAPTIVE,
    ),
]
AdaptiveStepFlag = Annotated[
    int | None,
    typer.Option(
        help="Samples added by each later round (adaptive.step).",
        show_default=False,
        rich_help_panel=_ADAPTIVE,
    ),
]
AdaptiveConfidenceFlag = Annotated[
    float | None,
    typer.Option(
        help="Stop once P(majority) reaches this (adaptive.confidence, 0.5-1; default 0.8).",
        show_default=False,
        rich_help_panel=_ADAPTIVE,
    ),
]
AdaptiveAgreementFlag = Annotated[
    float | None,
    typer.Option(
        help="Open-ended text: stop once the answers' word 3-gram agreement reaches this "
        "(adaptive.agreement).",
        show_default=False,
        rich_help_panel=_ADAPTIVE,
    ),
]
AdaptiveMaxRoundsFlag = Annotated[
    int | None,
    typer.Option(
        help="The most rounds (adaptive.max_rounds; bounds the latency).",
        show_default=False,
        rich_help_panel=_ADAPTIVE,
    ),
]
AnswerExtractFlag = Annotated[
    str | None,
    typer.Option(
        help="How to read an answer for adaptive stopping and the consensus shortcut: "
        "last_number, boxed, answer_tag, exact, tool_calls.",
        show_default=False,
        rich_help_panel=_ADAPTIVE,
    ),
]
ConsensusFlag = Annotated[
    str | None,
    typer.Option(
        help="Skip the aggregator when the candidates agree: auto, on, off.",
        show_default=False,
        rich_help_panel=_ADAPTIVE,
    ),
]
HedgeAfterFlag = Annotated[
    float | None,
    typer.Option(
        help="Send a duplicate of a call with no first token after this many seconds "
        "(hedge.after; turns hedging on).",
        show_default=False,
        rich_help_panel=_HEDGE,
    ),
]
HedgeBudgetFlag = Annotated[
    float | None,
    typer.Option(
        help="The most extra calls, as a fraction of the calls made (hedge.budget; default 0.25).",
        show_default=False,
        rich_help_panel=_HEDGE,
    ),
]
HedgePercentileFlag = Annotated[
    float | None,
    typer.Option(
        help="Hedge after this percentile of each endpoint's observed time to first token "
        "(hedge.percentile; --hedge-after holds until 20 calls were seen).",
        show_default=False,
        rich_help_panel=_HEDGE,
    ),
]
HedgeFallbackFlag = Annotated[
    str | None,
    typer.Option(
        help="Send the duplicate to this endpoint (hedge.fallback: an endpoint name of "
        "--config, or a URL on the first endpoint's model) instead of the same one.",
        show_default=False,
        rich_help_panel=_HEDGE,
    ),
]


@dataclass
class FusionFlags:
    """The values of the flags above (``None``: not given)."""

    adaptive: bool = False
    adaptive_first: int | None = None
    adaptive_step: int | None = None
    adaptive_confidence: float | None = None
    adaptive_agreement: float | None = None
    adaptive_max_rounds: int | None = None
    answer_extract: str | None = None
    consensus: str | None = None
    hedge_after: float | None = None
    hedge_budget: float | None = None
    hedge_percentile: float | None = None
    hedge_fallback: str | None = None

    def overrides(self) -> dict[str, Any]:
        """The :class:`~polyfuse.FusionOptions` fields the flags set; nested ones
        (``adaptive``, ``hedge``) hold only the sub-fields given, to merge onto a preset's."""
        out: dict[str, Any] = {}
        adaptive = _given(
            first=self.adaptive_first,
            step=self.adaptive_step,
            confidence=self.adaptive_confidence,
            agreement=self.adaptive_agreement,
            max_rounds=self.adaptive_max_rounds,
        )
        if self.adaptive or adaptive:
            out["adaptive"] = adaptive
        hedge = _given(
            after=self.hedge_after,
            budget=self.hedge_budget,
            percentile=self.hedge_percentile,
            fallback=self.hedge_fallback,
        )
        if hedge:
            out["hedge"] = hedge
        out.update(_given(answer_extract=self.answer_extract, consensus=self.consensus))
        return out


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


_FLAG_TYPES: dict[str, Any] = {
    "adaptive": AdaptiveFlag,
    "adaptive_first": AdaptiveFirstFlag,
    "adaptive_step": AdaptiveStepFlag,
    "adaptive_confidence": AdaptiveConfidenceFlag,
    "adaptive_agreement": AdaptiveAgreementFlag,
    "adaptive_max_rounds": AdaptiveMaxRoundsFlag,
    "answer_extract": AnswerExtractFlag,
    "consensus": ConsensusFlag,
    "hedge_after": HedgeAfterFlag,
    "hedge_budget": HedgeBudgetFlag,
    "hedge_percentile": HedgePercentileFlag,
    "hedge_fallback": HedgeFallbackFlag,
}
"""Each :class:`FusionFlags` field's typer declaration."""

Command = TypeVar("Command", bound=Callable[..., Any])


def takes_fusion_flags(*, without: tuple[str, ...] = ()) -> Callable[[Command], Command]:
    """Give a typer command the fusion flags (all but the :class:`FusionFlags` fields named in
    ``without``); the command declares ``fusion_flags: FusionFlags`` and receives their values
    there.

    typer reads a command's options from its signature, so the wrapper's signature is the
    command's own (less ``fusion_flags``) followed by one keyword-only parameter per flag.
    """
    unknown = set(without) - set(_FLAG_TYPES)
    if unknown:
        raise ValueError(f"not fusion flags: {', '.join(sorted(unknown))}")
    taken = [f for f in fields(FusionFlags) if f.name not in without]

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        if "fusion_flags" not in signature.parameters:
            raise TypeError(f"{command.__name__} must take fusion_flags: FusionFlags")
        own = [p for p in signature.parameters.values() if p.name != "fusion_flags"]
        flags = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=f.default,
                annotation=_FLAG_TYPES[f.name],
            )
            for f in taken
        ]

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name, f.default) for f in taken}
            return command(*args, fusion_flags=FusionFlags(**values), **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*own, *flags])  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
