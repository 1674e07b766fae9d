"""revgen: reverse-instruction synthesis (instruction backtranslation) toolkit."""

__version__ = "0.1.0"
