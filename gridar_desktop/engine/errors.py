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


OUT_OF_MEMORY_MESSAGE = ("the device ran out of memory; try a smaller N (-n), close other programs using the GPU, "
                         "or run on the CPU (--device cpu)")


def out_of_memory(e: BaseException) -> OutOfMemory | None:
    """The project's `OutOfMemory` for an allocator failure (torch.OutOfMemoryError, or a RuntimeError saying "out
    of memory", as CPU and MPS allocators do); None for any other error. Torch-free: matched by name and text."""
    if isinstance(e, OutOfMemory):
        return e
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" \
            or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower()):
        return OutOfMemory(OUT_OF_MEMORY_MESSAGE)
    return None
