"""Typed errors. Every message names the culprit and is fit to show a user as it is (UI report or console)."""


class SceneFitError(Exception):
    """Base of every error SceneFit raises on bad input; the UI and batch mode show its message."""


class DistributionError(SceneFitError, ValueError):
    """A distribution with invalid parameters (σ ≤ 0, probabilities not summing to 1, unknown kind…)."""


class ConfigError(SceneFitError, ValueError):
    """An invalid run setting or preset: unknown objective or estimator name, a bad number…"""


class TargetError(SceneFitError, ValueError):
    """A target set the engine cannot use: empty, mixed sizes or channels, NaN/inf pixels, unreadable files."""


class FeatureExtractorError(SceneFitError, ValueError):
    """A user-supplied feature extractor that is not a loadable TorchScript module or gives unusable output."""


class TrainingError(SceneFitError, RuntimeError):
    """Training went wrong (NaN loss, NaN parameters): the step is discarded and the run stops."""


class SpecError(SceneFitError, ValueError):
    """A random-property spec that cannot be used: its ID is gone, its path does not resolve, or the property is
    read-only, driven, animated or not a number."""


class RenderError(SceneFitError, RuntimeError):
    """Blender could not render a training image: no camera, an unavailable engine, or a failed render."""


class ClusterError(SceneFitError, RuntimeError):
    """Batch ``--ray`` cannot use its Ray cluster: Ray is not installed, the address is malformed or unreachable,
    or the cluster has no room for the render actors asked for."""


class ReportError(SceneFitError, RuntimeError):
    """Reports cannot be drawn: matplotlib or Pillow is not importable, or the history/images are unusable."""


class OutputError(SceneFitError, RuntimeError):
    """The output folder cannot be written (disk full, folder deleted, no permission): the last good checkpoint and
    result.json are kept, no partial file is left."""


# Inputs quoted in messages are cut to this many characters: a 50 MB label must not become a 50 MB message.
QUOTE_LIMIT = 200


def cut(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` shortened to at most ``limit`` characters, ending in "…" when something was cut off."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quote(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters (the one helper every message quoting input uses)."""
    try:
        text = repr(value)
    except Exception:  # a value whose repr fails is still worth naming
        text = f"<{type(value).__name__}>"
    return cut(text, limit)


# A message line at most (a status-bar report, a batch error line); inputs quoted in it are cut to QUOTE_LIMIT.
MESSAGE_LIMIT = 1000


def message_line(error: BaseException) -> str:
    """One line naming ``error`` for a user: SceneFit's own errors as they are, others with their type."""
    text = str(error) if isinstance(error, SceneFitError) else f"{type(error).__name__}: {error}"
    return cut(text, MESSAGE_LIMIT)
