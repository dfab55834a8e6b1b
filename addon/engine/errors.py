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


class ReportError(SceneFitError, RuntimeError):
    """Reports cannot be drawn: matplotlib or Pillow is not importable, or the history/images are unusable."""
