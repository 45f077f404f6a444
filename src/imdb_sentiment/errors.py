"""User-facing errors.

Anything a user can cause (bad paths, bad files, bad config values) raises :class:`UserError`.
The CLI prints its message on one line and exits with code 2 instead of showing a traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input, with a message that says what to do."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))
        self.message = " ".join(message.split())

    def __str__(self) -> str:
        return self.message


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, after its run folder was marked "interrupted": says how to continue."""

    def __init__(self, run_dir: object, how_to_resume: str | None = None) -> None:
        super().__init__(str(run_dir))
        self.run_dir = run_dir
        self.how_to_resume = how_to_resume or f"imdb-sentiment train --resume {run_dir}"

    @property
    def message(self) -> str:
        return f"interrupted; resume with: {self.how_to_resume}"


class JobStopped(Exception):
    """SIGTERM ended a command (a cluster pre-empting the job): exit code 143 (128 + SIGTERM), as the shell
    reports a job killed by SIGTERM, so schedulers treat it as pre-empted rather than failed or finished.
    ``message`` says what was kept and how to carry on."""

    exit_code = 143

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RunPreempted(JobStopped):
    """SIGTERM during a run (a cluster pre-empting the job), after a resume checkpoint was written and
    the run folder marked "preempted". Exit code 143 (128 + SIGTERM), as the shell reports a job
    killed by SIGTERM, so schedulers treat it as pre-empted rather than failed or finished."""

    exit_code = 143

    def __init__(
        self,
        run_dir: object,
        step: int | None,
        how_to_resume: str | None = None,
        stage: str | None = None,
        agreed: bool | None = None,
    ) -> None:
        Exception.__init__(self, str(run_dir))
        self.run_dir = run_dir
        self.step = step  # None: stopped outside the training steps, during ``stage``
        self.stage = stage
        # Every rank of a launched job stopped at the same point (default: after a step) and may meet
        # at a barrier before leaving.
        self.agreed = step is not None if agreed is None else agreed
        self.how_to_resume = how_to_resume or f"imdb-sentiment train --resume {run_dir}"

    @property
    def message(self) -> str:
        where = (
            f" after step {self.step}" if self.step is not None else f" during {self.stage}" if self.stage else ""
        )
        return f"stopped by SIGTERM{where}; resume with: {self.how_to_resume}"
