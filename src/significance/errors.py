"""Errors a user can fix: each message says what went wrong and what to do.

Every entry script prints a `SignificanceError` as one line on stderr and exits 1; anything
else is a bug and keeps its traceback. A fixable problem raises one of these classes, never a
plain `ValueError` or `FileNotFoundError`.
"""

from __future__ import annotations


class SignificanceError(Exception):
    """A problem the user can fix; the message names it and says what would work."""


class ConfigurationError(SignificanceError, ValueError):
    """A setting that cannot work; the message names it and says what would."""


class TaskDefinitionError(ConfigurationError):
    """A task file under `conf/task/` that does not describe a task."""


class CollectionError(SignificanceError):
    """A collection that cannot be read as the task needs (layout, labels, class folders)."""


class UnreadableImageError(SignificanceError):
    """An image file that cannot be decoded (truncated, corrupt, not an image, too large)."""


class SplitError(SignificanceError):
    """A collection that cannot be split as asked (too few images or groups of a class)."""


class CheckpointError(SignificanceError):
    """A checkpoint that cannot be loaded safely or is not a significance checkpoint."""


class CheckpointSaveError(SignificanceError, OSError):
    """A checkpoint could not be written; the previous one of that name is kept."""


class ResumeError(SignificanceError):
    """A run cannot resume as asked; the message says why."""


class PretrainedWeightsMissing(SignificanceError):
    """ImageNet weights are not on this machine and cannot be downloaded."""


class PipelineError(SignificanceError):
    """A pipeline whose checkpoints do not fit their slots, or a sweep that cannot make one."""


class SweepJobFailed(SignificanceError, RuntimeError):
    """A job of a sweep failed; its own log says why (the sweep went on without it)."""


class InputError(SignificanceError, FileNotFoundError):
    """A file or folder handed in (an input, a sweep, a split) that is not there or not usable."""
