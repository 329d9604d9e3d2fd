"""Python's cyclic garbage collector is paused while a tool starts, and resumed when its work begins.

A start creates about a million objects that live as long as the process: torch's modules, torch._dynamo's
(which torch.optim imports on its first use), Hydra's composed configs. Each full collection among them
re-scans them all, which costs about 0.6 s of a 3.1 s one-step `vae-train` on a 2-core CPU
(docs/performance.md). When the start's imports are done (vae-train: once its plan is made, before the
data loads; a sweep: when it starts), what is alive is moved to the permanent generation
(gc.freeze), so later collections skip it, and collection resumes. The cyclic garbage of the start (about
10 MB, mostly Hydra's config nodes) is kept with it: freed once, a full collection would cost 0.25 s.
"""
import gc


def pause() -> None:
    gc.disable()


def resume() -> None:
    """Collection on again, with everything alive now frozen; a no-op once collection runs (a sweep's next job)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
