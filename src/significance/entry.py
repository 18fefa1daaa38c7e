"""What every entry script shares: composing its config, one line for an error a user can fix.

An entry script is a `@hydra_entry_point("<config>")` function. Hydra composes the config
before the function runs, so a misspelt task or key, or `--help`, is answered without
importing torch or Lightning: import those inside the function.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import hydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from significance.config import register_resolvers
from significance.errors import SignificanceError
from significance.tasks import discover_tasks

log = logging.getLogger(__name__)

EXIT_USER_ERROR = 1
# Settings renamed in 0.2; the old name still works for this release, with a warning.
RENAMED_SETTINGS: dict[str, dict[str, str]] = {
    "train": {"data.cache_file": "data.facts_file"},
    "audit": {"data.cache_file": "data.facts_file"},
    "evaluate": {"cache_file": "facts_file", "device": "accelerator"},
    "predict": {"device": "accelerator"},
}
# Lightning's informational messages, its product tips among them, go through this logger.
LIGHTNING_INFO_LOGGER = "lightning.pytorch.utilities.rank_zero"
# Command-line flags that read as a setting (`--strict` is `strict=true`).
FLAGS: dict[str, dict[str, str]] = {"audit": {"--strict": "strict=true"}}
# Short names of settings, without a warning (`review=<file>` is `review.file=<file>`).
SHORT_NAMES: dict[str, dict[str, str]] = {"enrich": {"review": "review.file"}}


EntryFunction = Callable[[DictConfig], Any]


def hydra_entry_point(config_name: str) -> Callable[[EntryFunction], Callable[[], None]]:
    """Make `function(cfg)` the entry script of `conf/<config_name>.yaml`, with one-line errors."""

    def decorate(function: EntryFunction) -> Callable[[], None]:
        root = Path(inspect.getfile(function)).resolve().parent
        composed = hydra.main(
            version_base="1.3", config_path=str(root / "conf"), config_name=config_name
        )(function)

        @functools.wraps(function)
        def main() -> None:
            # Relative paths of the configs are the project's, wherever the command is typed.
            os.environ.setdefault("SIGNIFICANCE_ROOT", str(root))
            register_resolvers()
            hide_lightning_tips()
            sys.argv = [sys.argv[0], *updated_arguments(config_name, sys.argv[1:])]
            run_entry_point(composed)

        return main

    return decorate


def updated_arguments(config_name: str, arguments: Sequence[str]) -> list[str]:
    """The command-line arguments with flags spelt as settings and renamed settings renamed."""
    flags = FLAGS.get(config_name, {})
    renamed = RENAMED_SETTINGS.get(config_name, {})
    updated = []
    for argument in arguments:
        argument = flags.get(argument, argument)
        prefix = argument[: len(argument) - len(argument.lstrip("+~"))]
        key, equals, value = argument[len(prefix) :].partition("=")
        if key in SHORT_NAMES.get(config_name, {}):
            argument = f"{prefix}{SHORT_NAMES[config_name][key]}{equals}{value}"
        elif key in renamed:
            print(
                f"warning: {key} is now {renamed[key]}; the old name goes in the next release",
                file=sys.stderr,
            )
            argument = f"{prefix}{renamed[key]}{equals}{value}"
        updated.append(argument)
    return updated


class _WithoutTips(logging.Filter):
    """Drops Lightning's suggestions of other products ("💡 Tip: ... try installing ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


def hide_lightning_tips() -> None:
    """Keep Lightning's product tips (litlogger, litmodels) out of this process's log."""
    # Lightning's informational messages all go through this logger; the others stay.
    logger = logging.getLogger(LIGHTNING_INFO_LOGGER)
    if not any(isinstance(existing, _WithoutTips) for existing in logger.filters):
        logger.addFilter(_WithoutTips())


def user_errors() -> tuple[type[BaseException], ...]:
    """The errors whose message alone tells the user what to do (no traceback needed)."""
    # Hydra's and OmegaConf's: an unknown task or config group, a misspelt key, bad syntax.
    return (SignificanceError, HydraException, OmegaConfBaseException)


def run_entry_point(main: Callable[[], None]) -> None:
    """Run a `@hydra.main` function; what the user can fix ends in one line and exit code 1.

    Hydra prints its own errors over several lines (or a traceback, for a folder it cannot
    create); it is told to raise them instead (HYDRA_FULL_ERROR, inherited by DDP ranks and
    sweep jobs, which run through here too) and they are reported here in one line. Anything
    else, a bug, keeps its full traceback.
    """
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sys.stderr = _WithoutHydraJobErrorLine(sys.stderr)
    try:
        main()
    except user_errors() as error:
        _exit(one_line(error))
    except OSError as error:
        if error.filename is None:
            raise
        _exit(f"{error.strerror or error}: {error.filename}")
    except Exception as error:
        if not _is_out_of_gpu_memory(error):
            raise
        _exit(
            f"out of GPU memory ({str(error).splitlines()[0][:200]}): try a smaller "
            "data.batch_size (it is the global batch) or trainer.precision=bf16-mixed"
        )


def _is_out_of_gpu_memory(error: BaseException) -> bool:
    torch = sys.modules.get("torch")  # never imported: it cannot have run out of memory
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


def one_line(error: BaseException) -> str:
    """An error's message on one line: its first line, and the first line of its cause."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    cause = str(error.__cause__ or "").strip()
    if cause and cause.splitlines()[0] not in first:  # a message may quote its cause already
        first = f"{first.rstrip('.')}: {cause.splitlines()[0]}"
    if _caused_by(error, (ConfigKeyError, ConfigAttributeError)):
        first += " (misspelt? a new key needs a leading +)"
    missing = _caused_by(error, (MissingConfigException,))
    missing_file = str(missing.missing_cfg_file or "") if missing is not None else ""
    if missing_file.startswith("task/"):
        first += f" (tasks: {', '.join(_known_tasks())})"
    elif missing_file == "hydra/sweeper/optuna":
        first += " (hparams_search needs Optuna's sweeper: pip install -e '.[search]')"
    return first


def _caused_by(error: BaseException, kinds: tuple[type[BaseException], ...]) -> Any:
    """The first error of `kinds` in the chain of causes of `error`, or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, kinds):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _known_tasks() -> list[str]:
    conf = Path(os.environ.get("SIGNIFICANCE_ROOT", ".")) / "conf"
    return sorted(discover_tasks(conf)) if (conf / "task").is_dir() else []


class _WithoutHydraJobErrorLine:
    """stderr without the line Hydra writes before re-raising a job's error.

    Hydra writes "Error executing job with overrides: [...]" straight to stderr; our own
    `error:` line says what went wrong and what to do, so the user reads one line, not two.
    """

    prefix = "Error executing job with overrides:"

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return len(text) if text.startswith(self.prefix) else self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _exit(message: str) -> None:
    # Into the run's log file only: the console gets the one `error:` line below.
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(
                log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
            )
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)
