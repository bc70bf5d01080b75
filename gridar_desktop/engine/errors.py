"""Errors the engine raises at its boundary; each message names what is wrong and what to do."""


class EngineError(RuntimeError):
    """Base class: an error the app shows inline and recovers from."""


class ModelLoadError(EngineError):
    """A model folder that is missing, of another architecture, incomplete or corrupt, or an impossible device."""


class PromptNotUnderstood(EngineError):
    """A prompt with words the model's tokenizer cannot represent (the demo model knows only the shapes grammar)."""


class Cancelled(EngineError):
    """The job was cancelled (abort now); finished work stays where it is."""


class OutOfMemory(EngineError):
    """The device ran out of memory; the message suggests a smaller N or another device."""
