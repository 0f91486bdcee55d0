"""The one error the plotting module raises for input it cannot draw."""
from __future__ import annotations


class PlotInputError(ValueError):
    """The data handed to a plot is not what it draws from.

    ``field`` names the offending place (``result.history[3].units[0].width``),
    ``message`` says what was expected, so the CLI and the API can report it
    without a traceback.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")
